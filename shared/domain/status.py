"""A course's status as people read it: case facts joined with the programme's rules, computed on read.

Because planned end, truncation, due dates and planned phases are computed
here rather than stored, a programme change (a funding extension, say) shows
in every affected course at once, with nothing to re-project.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from shared.domain.calendar import add_months
from shared.domain.case import Case, CaseStatus, planned_phase_moves
from shared.domain.caseload import Caseload
from shared.domain.programme import DANISH_PHASE_NAMES, Programme, course_dates


def who5_scores(items: tuple[int, ...] | list[int]) -> dict[str, int]:
    """WHO-5: raw 0-25; times 4 gives 0-100 (<= 50 poor well-being, <= 28 likely depression)."""
    raw = sum(items)
    return {"raw": raw, "percentage": raw * 4}


def next_assessment_due(case: Case, programme: Programme) -> date | None:
    if case.status is not CaseStatus.ENROLLED or case.last_star_on is None:
        return None
    due = add_months(case.last_star_on, programme.assessment_interval_months)
    return due if due <= programme.funding_end else None  # none can be recorded after it: closure is due instead


def course_status(
    case: Case, programme: Programme | None, caseload: Caseload | None, today: date, as_of: date | None = None
) -> dict[str, Any]:
    """The case now; with ``as_of``, also its status and phase on that date."""
    view = case.to_dict()
    if as_of is not None:
        status = case.status_on(as_of)
        view["as_of"] = {
            "on": as_of.isoformat(),
            "status": status.value if status else None,
            "phase": case.phase_on(as_of),
        }
    for entry in view["who5"]:
        entry.update(who5_scores(entry["items"]))
    if caseload is not None:
        view["worker_id"] = caseload.assignments.get(case.case_id)
        view["waitlisted_since"] = next((s.isoformat() for c, s in caseload.waitlist if c == case.case_id), None)
        waiting = caseload.is_waitlisted(case.case_id)
        view["waitlisted_for"] = caseload.method_waited_for(case.case_id, case.method) if waiting else None
        view["assignments"] = [
            {"worker_id": w, "from": start, "until": until, "via": via}
            for w, start, until, via in caseload.history.get(case.case_id, ())
        ]
    if programme is None or case.enrolled_on is None:
        return view
    dates = course_dates(programme, case.enrolled_on)
    view["course"] = {
        "planned_end": dates.planned_end.isoformat(),
        "full_end": dates.full_end.isoformat(),
        "truncated": dates.truncated,
        "planned_months": dates.planned_months,
        "actual_months": dates.actual_months,
        # Past its planned end and not closed: a report counts it enrolled until its closure is recorded (dated on
        # or before the funding end, when that cut it short).
        "closure_overdue": case.status is CaseStatus.ENROLLED and today > dates.planned_end,
    }
    view["phase"] = case.phase
    view["phase_da"] = DANISH_PHASE_NAMES.get(case.phase or "", case.phase)
    if case.status is CaseStatus.ENROLLED:  # none for a course without phases (ICM, ACT)
        upcoming = planned_phase_moves(case, programme, dates.planned_end)
        view["next_phase"] = {"phase": upcoming[0][0], "on": upcoming[0][1].isoformat()} if upcoming else None
    due = next_assessment_due(case, programme)
    view["next_assessment_due"] = due.isoformat() if due else None
    view["assessment_overdue"] = bool(due and due < today)
    return view
