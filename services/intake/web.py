"""What intake's blueprints share: the caller, idempotency keys, the service, and answers."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from marshmallow import Schema

from services.intake.service import Context, Intake, NotFound
from shared.domain.case import Case, Invalid, Refused
from shared.domain.programme import Programme
from shared.domain.status import course_status
from shared.events import DomainEvent
from shared.eventstore import AppendResult, IdempotencyKey, IdempotencyKeyReused, WrongExpectedVersion
from shared.http import ApiError, error_response, json_body

_PARTNER = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_CASE_ID = re.compile(r"^case-[0-9a-f]{32}$")


def intake() -> Intake:
    service: Intake = current_app.extensions["intake"]
    return service


def partner() -> str:
    """The calling partner. A plain header until API keys replace it (issue 4)."""
    caller = request.headers.get("X-Partner", "")
    if not _PARTNER.match(caller):
        raise ApiError(401, "unauthenticated", "send your partner id in the X-Partner header")
    return caller


def checked_case_id(case_id: str) -> str:
    if not _CASE_ID.match(case_id):
        raise NotFound("no such case")
    return case_id


def load(schema: type[Schema]) -> tuple[Context, dict[str, Any]]:
    """The caller's context and the validated body (422 with every field named on bad input)."""
    caller = partner()
    body = json_body()
    data: dict[str, Any] = schema().load(body)
    key = request.headers.get("Idempotency-Key")
    idempotency = None
    if key is not None:
        if not _IDEMPOTENCY_KEY.match(key):
            raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key: 1-128 of A-Z a-z 0-9 . _ : -")
        canonical = json.dumps({"path": request.path, "body": body}, sort_keys=True, separators=(",", ":"))
        idempotency = IdempotencyKey(caller, key, hashlib.sha256(canonical.encode()).hexdigest())
    return Context(caller, g.request_id, idempotency), data


def case_view(case_id: str, as_of: date | None = None) -> dict[str, Any]:
    """A case's current status, folded from its streams (always current, unlike the projections)."""
    service = intake()
    case = service.case(checked_case_id(case_id))
    programme = service.programme(case.programme_id)
    return course_status(case, programme, service.caseload(case.programme_id), date.today(), as_of)


def written(result: AppendResult, view: Callable[[], dict[str, Any]], location: str) -> Response:
    response = jsonify(view() | {"positions": list(result.global_positions)})
    response.status_code = 201
    response.headers["Location"] = location
    if result.duplicate:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def install_errors(app: Flask) -> None:
    """How the domain's refusals reach HTTP callers."""

    @app.errorhandler(Refused)
    def _refused(e: Refused) -> Response:
        return error_response(409, e.code, e.message)

    @app.errorhandler(Invalid)
    def _invalid(e: Invalid) -> Response:
        return error_response(422, "validation_failed", "the request has invalid fields", e.fields)

    @app.errorhandler(NotFound)
    def _not_found(e: NotFound) -> Response:
        return error_response(404, "not_found", str(e))

    @app.errorhandler(WrongExpectedVersion)
    def _conflict(e: WrongExpectedVersion) -> Response:
        return error_response(409, "concurrent_update", "the case changed while you wrote; read it again and retry")

    @app.errorhandler(IdempotencyKeyReused)
    def _reused(e: IdempotencyKeyReused) -> Response:
        return error_response(
            422, "idempotency_key_reused", "this Idempotency-Key was used before with another request"
        )


def case_command(
    case_id: str, schema: type[Schema], decide: Callable[[Case, dict[str, Any]], Sequence[DomainEvent]]
) -> Response:
    """Validate, decide on the case's current state, append (releasing the worker's slot if it ends the case)."""
    ctx, data = load(schema)
    case_id = checked_case_id(case_id)
    result = intake().on_case(ctx, case_id, data["on"], lambda case: decide(case, data))
    return written(result, lambda: case_view(case_id), f"/cases/{case_id}")


def programme_case_command(
    case_id: str, schema: type[Schema], decide: Callable[[Case, Programme, dict[str, Any]], Sequence[DomainEvent]]
) -> Response:
    """As ``case_command``, for decisions that follow the programme's rules."""
    ctx, data = load(schema)
    case_id = checked_case_id(case_id)
    result = intake().on_case_with_programme(ctx, case_id, data["on"], lambda case, p: decide(case, p, data))
    return written(result, lambda: case_view(case_id), f"/cases/{case_id}")
