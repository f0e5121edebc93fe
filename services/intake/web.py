"""What intake's blueprints share: the caller and their scope, idempotency keys, the service, and answers."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

import redis
from flask import Flask, Response, current_app, jsonify, request
from marshmallow import Schema

from services.intake.service import Context, Intake, NotFound
from shared.audit import access_log, record_access
from shared.authn import Authenticator, caller, confirmed_by
from shared.domain import events as ev
from shared.domain.access import Principal, Role, referral_outcome, sees_course, sees_programme, sees_referral
from shared.domain.case import Case, Invalid, Refused
from shared.domain.programme import Programme
from shared.domain.status import course_status
from shared.events import DomainEvent
from shared.events.envelope import today
from shared.eventstore import AppendResult, IdempotencyKey, IdempotencyKeyReused, LogRestoring, WrongExpectedVersion
from shared.http import ApiError, error_response, json_body, this_app, this_g, this_request
from shared.lean_load import LeanLoad
from shared.vault import ERASED

log = logging.getLogger(__name__)
IDEMPOTENCY_KEY_FORMAT = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_CASE_ID = re.compile(r"^case-[0-9a-f]{32}$")
STAFF = (Role.COORDINATOR, Role.WORKER)


def intake() -> Intake:
    service: Intake = this_app().extensions["intake"]
    return service


def in_programme(principal: Principal, programme_id: str) -> None:
    """404 for a programme outside the caller's scope, as for one that does not exist."""
    if not sees_programme(principal, programme_id):
        raise NotFound("no such programme")


def scoped_case(principal: Principal, case_id: str, *, referral: bool = False, allowed: bool | None = None) -> Case:
    """The case if the caller may see it (its referral only, with ``referral``); 404 otherwise. Logged either way.
    ``allowed=False``: a caller already refused (its role), logged as refused."""
    if not _CASE_ID.match(case_id):
        raise NotFound("no such case")
    service = intake()
    try:
        case, _, caseload = service.course(case_id)  # one round trip; the command reuses the programme
    except NotFound:
        raise NotFound("no such case") from None
    if allowed is None:
        allowed = (sees_referral if referral else sees_course)(principal, case, caseload)
    log_case_access(principal, case_id, allowed)
    if not allowed:
        raise NotFound("no such case")
    return case


def log_case_access(principal: Principal, case_id: str, allowed: bool) -> None:
    """The request's endpoint, by this key, at the case: in the case's access log."""
    service = intake()
    action = "read" if request.method == "GET" else "write"
    record_access(service.store.redis, service.prefix, principal, case_id, f"{action} {request.endpoint}", allowed)


def log_role_refusals(app: Flask) -> None:
    """A key whose role never serves an endpoint is refused (403) before its case is looked at; at a case that
    exists, that refused attempt goes to the case's access log too."""

    @app.after_request
    def _log(response: Response) -> Response:
        principal: Principal | None = this_g().get("principal")
        case_id = (this_request().view_args or {}).get("case_id")
        if response.status_code != 403 or principal is None or not isinstance(case_id, str):
            return response
        return logged_refusal(response, principal, lambda: scoped_case(principal, case_id, allowed=False))


def logged_refusal(response: Response, principal: Principal, record: Callable[[], object]) -> Response:
    """A refused attempt, written to the access log by ``record`` (if its case or citizen exists; refused either
    way). Should Redis fail meanwhile, the answer is still the refusal, and the attempt goes to the service's
    log instead (ids of the key, never of the citizen; the request id links it to the request's own line)."""
    try:
        with suppress(NotFound):
            record()
    except redis.RedisError as e:
        log.error(
            "a refused attempt by %s:%s at %s is missing from the access log (of its case, or some of its "
            "citizen's): %s",
            principal.partner_id,
            principal.key_id,
            request.endpoint,
            type(e).__name__,
        )
    return response


def case_access_log(case_ids: list[str]) -> list[dict[str, Any]]:
    """The cases' access log, with who created each case (a referral, a reopening): that write is the case's first
    event, whose actor the log keeps, so it is not written a second time on the referral's path."""
    service = intake()
    entries = access_log(service.store.redis, service.prefix, case_ids)
    if not case_ids:
        return entries
    authenticator: Authenticator = current_app.extensions["authenticator"]
    for case_id, first in service.store.first_events(case_ids).items():
        partner_id, _, key_id = first.actor.partition(":")
        partner = authenticator.partner(partner_id)
        issued = partner.keys.get(key_id) if partner else None
        reopened = isinstance(first.payload, ev.ReferralReceived) and first.payload.reopened_from
        endpoint = "courses.reopen" if reopened else "referrals.create_referral"
        entries.append(
            {
                "case_id": case_id,
                "at": first.recorded_at.astimezone(UTC).isoformat(),
                "partner": partner_id,
                "key": key_id,
                "role": issued.role.value if issued else "",
                "action": f"write {endpoint}",
                "allowed": True,
            }
        )
    return sorted(entries, key=lambda e: datetime.fromisoformat(e["at"]))


def load(principal: Principal, schema: type[Schema]) -> tuple[Context, dict[str, Any]]:
    """The caller's context and the validated body (422 with every field named on bad input)."""
    body = json_body()
    data: dict[str, Any] = _loader(schema).load(body)
    req, request_g = this_request(), this_g()
    key = req.headers.get("Idempotency-Key")
    idempotency = None
    if key is not None:
        if not IDEMPOTENCY_KEY_FORMAT.match(key):
            raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key: 1-128 of A-Z a-z 0-9 . _ : -")
        canonical = json.dumps({"path": req.path, "body": body}, sort_keys=True, separators=(",", ":"))
        # Scoped to the caller's own key, not its partner: a replay answers with what the first request was
        # answered, which another key of the same partner (a worker's, say) may not be allowed to see.
        scope = f"{principal.partner_id}:{principal.key_id}"
        # Keyed: the fingerprint is kept for the key's lifetime, and a plain hash of a body that holds a CPR
        # number would give the number back to anyone trying the few million there are.
        fingerprint = hmac.new(intake().secret, b"idempotency:" + canonical.encode(), hashlib.sha256).hexdigest()
        idempotency = IdempotencyKey(scope, key, fingerprint)
    actor = f"{principal.partner_id}:{principal.key_id}"
    return Context(actor, request_g.request_id, idempotency, request_g.get("authority")), data


@cache
def _loader(schema: type[Schema]) -> LeanLoad:
    """One instance per request schema: building one costs more than validating with it, and our schemas keep
    no state between loads (no ``context``, no instance attributes). Loaded lean (``shared.lean_load``): a fifth
    of the time, the same answers."""
    return LeanLoad(schema())


def seal(case: Case, text: str | None) -> str | None:
    """Free text may hold personal data: it is stored sealed with the citizen's key. Once the citizen's data
    was erased it is not stored at all (sealing would make a new key, and the text readable again)."""
    if text is not None and intake().is_erased(case.citizen_id):
        return ERASED
    return intake().vault.seal(case.citizen_id, text)


def revealed(view: dict[str, Any]) -> dict[str, Any]:
    """Open the sealed fields of a view for its caller (``[erased]`` once the citizen's key is gone)."""
    vault = intake().vault
    for key in ("citizen_alias", "outcome_reason", "reason"):
        if key in view:
            view[key] = vault.reveal(view[key])
    for goal in view.get("goals", []):
        goal["description"] = vault.reveal(goal["description"])
    for phase in view.get("phases", []):
        phase["reason"] = vault.reveal(phase["reason"])
    view.pop("match_key", None)
    return view


def view_for(principal: Principal, case_id: str, at: AppendResult | None = None) -> dict[str, Any]:
    """A referring partner sees its referral's outcome; staff see the course."""
    if principal.role is Role.REFERRER:
        return revealed(referral_outcome(intake().case(case_id, at)))
    return case_view(case_id, at=at)


def case_view(case_id: str, as_of: date | None = None, at: AppendResult | None = None) -> dict[str, Any]:
    """A case's current status, folded from its streams (always current, unlike the projections); after a
    command, ``at`` its append: the state that command made."""
    case, programme, caseload = intake().course(case_id, at)
    return revealed(course_status(case, programme, caseload, today(), as_of))


def written(result: AppendResult, view: Callable[[], dict[str, Any]], location: str) -> Response:
    confirmed_by(result)
    response = jsonify(view() | {"positions": list(result.positions)})
    response.status_code = 201
    response.headers["Location"] = location
    if result.duplicate:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def case_command(
    case_id: str,
    schema: type[Schema],
    decide: Callable[[Case, dict[str, Any]], Sequence[DomainEvent]],
    roles: tuple[Role, ...] = STAFF,
    referral: bool = False,
) -> Response:
    """Check the caller and scope, validate, decide on the case's current state, append."""
    principal = caller(*roles)
    checked = scoped_case(principal, case_id, referral=referral)
    ctx, data = load(principal, schema)
    try:
        result = intake().on_case(ctx, case_id, data["on"], lambda case, *_: decide(case, data), read=checked)
    except Refused:
        if principal.role is Role.REFERRER:
            raise referrer_refusal(case_id) from None
        raise
    return written(result, lambda: view_for(principal, case_id, result), f"/cases/{case_id}")


def referrer_refusal(case_id: str) -> Refused:
    """Why a command was refused tells the course's state (enrolled, closed) and the dates of its changes; a
    referring partner may know only its referral's outcome, so it is told no more than that."""
    return Refused(
        "not_possible_now",
        f"the referral's state does not allow this on that date; GET /referrals/{case_id} shows its outcome",
    )


def programme_case_command(
    case_id: str, schema: type[Schema], decide: Callable[[Case, Programme, dict[str, Any]], Sequence[DomainEvent]]
) -> Response:
    """As ``case_command``, for decisions that follow the programme's rules."""
    principal = caller(*STAFF)
    checked = scoped_case(principal, case_id)
    ctx, data = load(principal, schema)
    result = intake().on_case(ctx, case_id, data["on"], lambda case, p, _: decide(case, p, data), read=checked)
    return written(result, lambda: case_view(case_id, at=result), f"/cases/{case_id}")


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

    @app.errorhandler(LogRestoring)
    def _restoring(e: LogRestoring) -> Response:
        response = error_response(503, "log_restoring", str(e))
        response.headers["Retry-After"] = "60"
        return response

    @app.errorhandler(IdempotencyKeyReused)
    def _reused(e: IdempotencyKeyReused) -> Response:
        return error_response(
            422, "idempotency_key_reused", "this Idempotency-Key was used before with another request"
        )
