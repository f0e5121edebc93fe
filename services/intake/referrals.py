"""Referrals and the lifecycle commands that follow them.

Each command reads the case's stream, lets the pure domain decide, and appends
with the version it read as the expected version, so two racing writers can
never both succeed on a stale view: the loser gets 409 and may retry.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from services.caseflow.queries import cases_of_programme
from services.intake.schemas import DatedRequest, ReasonRequest, ReferralRequest
from shared.domain.case import (
    Case,
    Refused,
    decide_decline,
    decide_start_assessment,
    decide_withdraw,
    evolve,
)
from shared.domain.cpr import cpr_fingerprint, parse_cpr
from shared.domain.events import ReferralReceived
from shared.events import DomainEvent, NewEvent
from shared.events.envelope import start_of_day
from shared.eventstore import (
    AppendResult,
    EventStore,
    IdempotencyKey,
    IdempotencyKeyReused,
    WrongExpectedVersion,
)
from shared.http import ApiError, json_body
from shared.nudges import nudge_stream

bp = Blueprint("referrals", __name__)

_PARTNER = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_CASE_ID = re.compile(r"^case-[0-9a-f]{32}$")


def _store() -> EventStore:
    store: EventStore = current_app.extensions["event_store"]
    return store


def _partner() -> str:
    """The calling partner. A plain header until API keys replace it (issue 4)."""
    partner = request.headers.get("X-Partner", "")
    if not _PARTNER.match(partner):
        raise ApiError(401, "unauthenticated", "send your partner id in the X-Partner header")
    return partner


def _idempotency(partner: str, body: dict[str, Any], path: str) -> IdempotencyKey | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key: 1-128 of A-Z a-z 0-9 . _ : -")
    canonical = json.dumps({"path": path, "body": body}, sort_keys=True, separators=(",", ":"))
    return IdempotencyKey(partner, key, hashlib.sha256(canonical.encode()).hexdigest())


def _append(event: NewEvent, expected_version: int, idempotency: IdempotencyKey | None) -> AppendResult:
    store = _store()
    try:
        result = store.append(event.stream_id, [event], expected_version=expected_version, idempotency=idempotency)
    except WrongExpectedVersion:
        raise ApiError(409, "concurrent_update", "the case changed while you wrote; read it again and retry") from None
    except IdempotencyKeyReused:
        raise ApiError(
            422, "idempotency_key_reused", "this Idempotency-Key was used before with a different request"
        ) from None
    # The event is safe in the log now; a lost nudge only delays projection until the next sweep.
    nudge_stream(store.redis, current_app.config["KEY_PREFIX"], store.partitions, event.stream_id, g.request_id)
    return result


def _load_case(case_id: str) -> Case:
    if not _CASE_ID.match(case_id):
        raise ApiError(404, "not_found", "no such referral")
    case: Case | None = None
    for event in _store().read_stream(case_id):
        case = evolve(case, case_id, event.payload, event.occurred_on)
    if case is None:
        raise ApiError(404, "not_found", "no such referral")
    return case


def _view(case: Case) -> dict[str, Any]:
    """What a caller sees of a referral: the case, named by its referral id."""
    view = case.to_dict()
    return {"referral_id": view.pop("case_id")} | view


def _written(result: AppendResult, status: int) -> Response:
    case = _load_case(result.stream_id)
    response = jsonify(_view(case) | {"position": result.global_positions[-1]})
    response.status_code = status
    response.headers["Location"] = f"/referrals/{result.stream_id}"
    if result.duplicate:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.post("/referrals")
def create_referral() -> Response:
    partner = _partner()
    body = json_body()
    data = ReferralRequest().load(body)
    idempotency = _idempotency(partner, body, request.path)
    citizen = data["citizen"]
    cpr = parse_cpr(citizen["cpr"]) if citizen.get("cpr") else None
    payload = ReferralReceived(
        programme_id=data["programme_id"],
        source="self" if data["self_referral"] else partner,
        consent_given=data["consent"]["given"],
        citizen_alias=citizen.get("alias"),
        cpr_fingerprint=cpr_fingerprint(cpr, current_app.config["CPR_SECRET"]) if cpr else None,
        birth_date=cpr.birth_date if cpr else None,
    )
    case_id = f"case-{uuid.uuid4().hex}"
    event = _new_event(case_id, payload, data["referred_on"], partner)
    return _written(_append(event, 0, idempotency), 201)


def _new_event(case_id: str, payload: DomainEvent, on: date, actor: str) -> NewEvent:
    return NewEvent(case_id, payload, start_of_day(on), actor, metadata={"request_id": g.request_id})


def _command(
    case_id: str, schema: type[DatedRequest], decide: Callable[[Case, dict[str, Any]], DomainEvent]
) -> Response:
    partner = _partner()
    body = json_body()
    data = schema().load(body)
    idempotency = _idempotency(partner, body, request.path)
    case = _load_case(case_id)
    try:
        payload = decide(case, data)
    except Refused as refused:
        raise ApiError(409, refused.code, refused.message) from None
    return _written(_append(_new_event(case_id, payload, data["on"], partner), case.version, idempotency), 201)


@bp.post("/referrals/<case_id>/assessment")
def start_assessment(case_id: str) -> Response:
    return _command(case_id, DatedRequest, lambda case, d: decide_start_assessment(case, d["on"]))


@bp.post("/referrals/<case_id>/decline")
def decline(case_id: str) -> Response:
    return _command(case_id, ReasonRequest, lambda case, d: decide_decline(case, d["reason"], d["on"]))


@bp.post("/referrals/<case_id>/withdraw")
def withdraw(case_id: str) -> Response:
    return _command(case_id, ReasonRequest, lambda case, d: decide_withdraw(case, d["reason"], d["on"]))


@bp.get("/referrals/<case_id>")
def get_referral(case_id: str) -> Response:
    _partner()
    return jsonify(_view(_load_case(case_id)))


@bp.get("/programmes/<programme_id>/cases")
def list_cases(programme_id: str) -> Response:
    """The caseflow projection's view of a programme's cases (eventually consistent with the log)."""
    _partner()
    settings = current_app.config
    return jsonify(
        programme_id=programme_id,
        cases=cases_of_programme(_store().redis, settings["KEY_PREFIX"], programme_id),
    )
