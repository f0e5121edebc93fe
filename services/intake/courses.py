"""The course: enrolment by the first star, measures, the activity plan, phases, assignment, closure."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from services.intake import schemas as s
from services.intake.web import (
    STAFF,
    case_access_log,
    case_command,
    case_view,
    intake,
    load,
    programme_case_command,
    scoped_case,
    seal,
    written,
)
from shared.authn import caller
from shared.domain import events as ev
from shared.domain.access import Role
from shared.domain.case import (
    Case,
    decide_add_goal,
    decide_close,
    decide_goal_change,
    decide_phase,
    decide_purpose,
    decide_situation,
    decide_star,
    decide_who5,
)
from shared.domain.caseload import Caseload, assigned_method, decide_assignment
from shared.domain.programme import Programme
from shared.events import DomainEvent

bp = Blueprint("courses", __name__)


def _star(case_id: str, must_enrol: bool) -> Response:
    """A star; the first enrols, in the method asked for or that of the case's relation worker (no other), else
    the one the citizen waits for on the waitlist."""
    principal = caller(*STAFF)
    checked = scoped_case(principal, case_id)
    ctx, d = load(principal, s.StarRequest)

    def decide(case: Case, programme: Programme, caseload: Caseload) -> list[DomainEvent]:
        worker_method = assigned_method(caseload, programme, case_id)
        waited_for = caseload.waiting_for.get(case_id)
        return decide_star(case, programme, d["scores"], d["on"], d["method"], must_enrol, worker_method, waited_for)

    result = intake().on_case(ctx, case_id, d["on"], decide, read=checked)
    return written(result, lambda: case_view(case_id, at=result), f"/cases/{case_id}")


@bp.post("/cases/<case_id>/enrolment")
def enrol(case_id: str) -> Response:
    """The first star: enrols the citizen on its date ("indskrevet"), within the recruitment window."""
    return _star(case_id, must_enrol=True)


@bp.post("/cases/<case_id>/stars")
def record_star(case_id: str) -> Response:
    return _star(case_id, must_enrol=False)


@bp.post("/cases/<case_id>/who5")
def record_who5(case_id: str) -> Response:
    return case_command(case_id, s.Who5Request, lambda case, d: [decide_who5(case, tuple(d["items"]), d["on"])])


@bp.post("/cases/<case_id>/purposes")
def record_purpose(case_id: str) -> Response:
    return programme_case_command(
        case_id, s.PurposeRequest, lambda case, p, d: [decide_purpose(case, p, d["purpose"], d["on"])]
    )


@bp.post("/cases/<case_id>/goals")
def add_goal(case_id: str) -> Response:
    def decide(case: Case, programme: Programme, d: dict[str, Any]) -> list[Any]:
        goal_id = d["goal_id"] or case.next_goal_id()
        return [decide_add_goal(case, programme, goal_id, d["life_area"], seal(case, d["description"]) or "", d["on"])]

    return programme_case_command(case_id, s.GoalRequest, decide)


@bp.post("/cases/<case_id>/goals/<goal_id>/<any(update, achieve, drop):change>")
def change_goal(case_id: str, goal_id: str, change: str) -> Response:
    return case_command(
        case_id,
        s.GoalChangeRequest,
        lambda case, d: [decide_goal_change(case, goal_id, change, seal(case, d["description"]), d["on"])],
    )


SITUATIONS: dict[str, tuple[type[s.DatedRequest], Any]] = {
    "contacts": (s.ContactRequest, lambda d: ev.ContactRecorded(kind=d["kind"])),
    "housing": (s.HousingRequest, lambda d: ev.HousingChanged(situation=d["situation"])),
    "addiction-treatment": (s.AddictionRequest, lambda d: ev.AddictionTreatmentChanged(in_treatment=d["in_treatment"])),
    "job-centre-category": (s.JobCentreRequest, lambda d: ev.JobCentreCategoryChanged(category=d["category"])),
}


@bp.post('/cases/<case_id>/<any("contacts", "housing", "addiction-treatment", "job-centre-category"):what>')
def record_situation(case_id: str, what: str) -> Response:
    schema, make = SITUATIONS[what]
    return case_command(case_id, schema, lambda case, d: [decide_situation(case, make(d), d["on"])])


@bp.post("/cases/<case_id>/phase")
def move_phase(case_id: str) -> Response:
    """A worker's explicit early or late phase move, with a reason."""
    return programme_case_command(
        case_id,
        s.PhaseRequest,
        lambda case, p, d: [decide_phase(case, p, d["phase"], seal(case, d["reason"]) or "", d["on"])],
    )


@bp.post("/cases/<case_id>/closure")
def close(case_id: str) -> Response:
    return programme_case_command(
        case_id, s.CloseRequest, lambda case, p, d: [decide_close(case, p, d["reason"], d["on"])]
    )


@bp.post("/cases/<case_id>/assignment")
def assign(case_id: str) -> Response:
    """Assign (or reassign) a relation worker; beyond capacity 409, or the waitlist if asked."""
    principal = caller(Role.COORDINATOR)
    scoped_case(principal, case_id)
    ctx, data = load(principal, s.AssignmentRequest)
    result = intake().on_caseload(
        ctx,
        case_id,
        data["on"],
        lambda caseload, programme, case: decide_assignment(
            caseload, programme, case, data["worker_id"], data["waitlist_if_full"], data["on"]
        ),
    )
    return written(result, lambda: case_view(case_id, at=result), f"/cases/{case_id}")


@bp.post("/cases/<case_id>/reopen")
def reopen(case_id: str) -> Response:
    """A closed course reopens as a new course (a new case) for the same citizen."""
    principal = caller(Role.COORDINATOR)
    scoped_case(principal, case_id)
    ctx, data = load(principal, s.ReopenRequest)
    result = intake().reopen(ctx, case_id, data["on"], data["consent"]["given"])
    return written(result, lambda: case_view(result.stream_id, at=result), f"/cases/{result.stream_id}")


@bp.get("/cases/<case_id>/access-log")
def get_access_log(case_id: str) -> Response:
    """Who read or wrote this case, and who tried: for the programme's coordinators."""
    scoped_case(caller(Role.COORDINATOR), case_id)
    return jsonify(case_id=case_id, entries=case_access_log([case_id]))
