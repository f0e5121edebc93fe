"""Referrals ("henvendelser") and what the programme answers: assessment, decline, withdrawal, referral on.

A referring partner (role referrer) may refer, read and withdraw its own
referrals, and sees only their outcome; programme staff see and act on the case.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from services.intake.schemas import DatedRequest, ReasonRequest, ReferOnRequest, ReferralRequest
from services.intake.service import AuthorityChanged, Referral
from services.intake.web import (
    STAFF,
    case_command,
    case_view,
    in_programme,
    intake,
    load,
    log_case_access,
    revealed,
    scoped_case,
    seal,
    view_for,
    written,
)
from shared.authn import caller
from shared.domain.access import Principal, Role, referral_outcome, sees_referral, within_key_scope
from shared.domain.case import Invalid, decide_decline, decide_refer_on, decide_start_assessment, decide_withdraw
from shared.domain.cpr import parse_cpr
from shared.domain.events import SELF_REFERRAL
from shared.http import date_arg

bp = Blueprint("referrals", __name__)
REFERRING = (Role.REFERRER, *STAFF)


@bp.post("/referrals")
def create_referral() -> Response:
    """A referral's only effect is its append, so it takes the caller's key as this process last saw it and
    the append confirms it (see ``shared.authn``); if the partner changed meanwhile, once more afresh."""
    try:
        return _refer(caller(*REFERRING, checked_by_append=True))
    except AuthorityChanged:
        return _refer(caller(*REFERRING))


def _refer(principal: Principal) -> Response:
    ctx, data = load(principal, ReferralRequest)
    if principal.role is not Role.REFERRER:
        in_programme(principal, data["programme_id"])
    elif not within_key_scope(principal, data["programme_id"]):
        raise Invalid({"programme_id": ["no such programme"]})  # as for one that does not exist
    citizen = data["citizen"]
    referral = Referral(
        programme_id=data["programme_id"],
        source=SELF_REFERRAL if data["self_referral"] and principal.role is not Role.REFERRER else principal.partner_id,
        consent_given=data["consent"]["given"],
        alias=citizen.get("alias"),
        cpr=parse_cpr(citizen["cpr"]) if citizen.get("cpr") else None,
        birth_date=citizen.get("birth_date"),
    )
    result = intake().refer(ctx, data["referred_on"], referral)
    case_id = result.stream_id
    view = (
        (lambda: _replayed(principal, case_id)) if result.duplicate else (lambda: view_for(principal, case_id, result))
    )
    return written(result, view, f"/referrals/{case_id}")


def _replayed(principal: Principal, case_id: str) -> dict[str, Any]:
    """A replayed referral's answer is a read of the case as it is now, by the caller as it is now: a worker's
    first answer was the course just begun, but a replay weeks later must not show the course once it is
    another worker's. So it is checked, and logged, as a read is; a caller who may no longer see it gets what
    it sent."""
    case, _, caseload = intake().course(case_id)
    allowed = sees_referral(principal, case, caseload)
    log_case_access(principal, case_id, allowed)
    if allowed:
        return view_for(principal, case_id)
    return {"case_id": case_id, "programme_id": case.programme_id, "referred_on": case.referred_on.isoformat()}


@bp.get("/referrals/<case_id>")
def get_referral(case_id: str) -> Response:
    principal = caller(*REFERRING)
    case = scoped_case(principal, case_id, referral=True)
    return jsonify(revealed(referral_outcome(case)) if principal.role is Role.REFERRER else case_view(case_id))


@bp.get("/cases/<case_id>")
def get_case(case_id: str) -> Response:
    """The case now; ``?on=YYYY-MM-DD`` adds which status and phase it had on that date."""
    scoped_case(caller(*STAFF), case_id)
    return jsonify(case_view(case_id, date_arg("on")))


@bp.post("/referrals/<case_id>/assessment")
def start_assessment(case_id: str) -> Response:
    return case_command(case_id, DatedRequest, lambda case, d: [decide_start_assessment(case, d["on"])])


@bp.post("/referrals/<case_id>/decline")
def decline(case_id: str) -> Response:
    return case_command(
        case_id, ReasonRequest, lambda case, d: [decide_decline(case, seal(case, d["reason"]) or "", d["on"])]
    )


@bp.post("/referrals/<case_id>/withdraw")
def withdraw(case_id: str) -> Response:
    """The referring partner, or staff, withdraw a referral that has not become a course."""
    return case_command(
        case_id,
        ReasonRequest,
        lambda case, d: [decide_withdraw(case, seal(case, d["reason"]) or "", d["on"])],
        REFERRING,
        referral=True,
    )


@bp.post("/referrals/<case_id>/refer-on")
def refer_on(case_id: str) -> Response:
    return case_command(
        case_id, ReferOnRequest, lambda case, d: [decide_refer_on(case, seal(case, d["to"]) or "", d["on"])]
    )
