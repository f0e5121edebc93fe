"""The intake API as an OpenAPI 3 document, built from the same marshmallow schemas that validate requests.

Served at ``/openapi.json``; the fuzz test (schemathesis) generates requests from it.
"""

from __future__ import annotations

import re
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import Schema, fields

from services.intake import schemas as s
from services.intake.web import IDEMPOTENCY_KEY_FORMAT

# The request body each POST endpoint validates (a test checks every POST route is here).
REQUEST_SCHEMAS: dict[str, type[Schema]] = {
    "programmes.define_programme": s.ProgrammeRequest,
    "programmes.change_programme": s.ProgrammeChangeRequest,
    "programmes.add_worker": s.WorkerRequest,
    "programmes.change_capacity": s.CapacityRequest,
    "referrals.create_referral": s.ReferralRequest,
    "referrals.start_assessment": s.DatedRequest,
    "referrals.decline": s.ReasonRequest,
    "referrals.withdraw": s.ReasonRequest,
    "referrals.refer_on": s.ReferOnRequest,
    "courses.enrol": s.StarRequest,
    "courses.record_star": s.StarRequest,
    "courses.record_who5": s.Who5Request,
    "courses.record_purpose": s.PurposeRequest,
    "courses.add_goal": s.GoalRequest,
    "courses.change_goal": s.GoalChangeRequest,
    "courses.move_phase": s.PhaseRequest,
    "courses.close": s.CloseRequest,
    "courses.assign": s.AssignmentRequest,
    "courses.reopen": s.ReopenRequest,
    "citizens.decide": s.MatchDecisionRequest,
    "citizens.erase": s.ErasureRequest,
}
SITUATIONS: dict[str, type[Schema]] = {
    "contacts": s.ContactRequest,
    "housing": s.HousingRequest,
    "addiction-treatment": s.AddictionRequest,
    "job-centre-category": s.JobCentreRequest,
}
DATE = {"type": "string", "format": "date"}
QUERY: dict[str, dict[str, dict[str, Any]]] = {  # endpoint -> its query parameters
    "referrals.get_case": {"on": DATE},
    "programmes.list_overdue": {"on": DATE},
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "a repeat with the same key and body answers as the first time, writing nothing again",
    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_FORMAT.pattern},
}
_ANY = re.compile(r"<any\(([^)]*)\):(\w+)>")
_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")


class ErrorBody(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    fields_ = fields.Dict(data_key="fields")


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBody, required=True)


def _paths(rule: str) -> list[tuple[str, dict[str, str]]]:
    """A Flask rule as OpenAPI paths: ``any(...)`` becomes one path per choice."""
    match = _ANY.search(rule)
    if not match:
        return [(_PARAM.sub(r"{\1}", rule), {})]
    choices = [c.strip().strip("\"'") for c in match.group(1).split(",")]
    return [
        (_PARAM.sub(r"{\1}", rule[: match.start()] + c + rule[match.end() :]), {match.group(2): c}) for c in choices
    ]


def openapi(app: Flask) -> dict[str, Any]:
    spec = APISpec(title="caseflow intake", version="1", openapi_version="3.0.3", plugins=[MarshmallowPlugin()])
    spec.components.security_scheme("apiKey", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=ErrorSchema)
    error = {"description": "refused", "content": {"application/json": {"schema": "Error"}}}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static",) or rule.rule in ("/openapi.json", "/metrics"):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            for path, fixed in _paths(rule.rule):
                params = [
                    {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                    for n in re.findall(r"{(\w+)}", path)
                ] + [
                    {"name": n, "in": "query", "required": False, "schema": t}
                    for n, t in QUERY.get(rule.endpoint, {}).items()
                ]
                operation: dict[str, Any] = {
                    "operationId": f"{rule.endpoint}:{method}:{path}",
                    "parameters": params,
                    "security": [{"apiKey": []}],
                    "responses": {"200": {"description": "ok"}, "201": {"description": "written"}, "4XX": error},
                }
                if method == "POST":
                    params.append(IDEMPOTENCY_KEY)
                    schema = SITUATIONS.get(fixed.get("what", "")) or REQUEST_SCHEMAS[rule.endpoint]
                    operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
                spec.path(path=path, operations={method.lower(): operation})
    return spec.to_dict()
