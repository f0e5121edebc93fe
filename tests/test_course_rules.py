"""A programme like the Copenhagen one, replayed with no Redis: enrolment, end dates, truncation, phases."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import orjson
import pytest

from shared.domain import events as ev
from shared.domain.calendar import add_months, months_between
from shared.domain.case import (
    Case,
    CaseStatus,
    Invalid,
    Refused,
    decide_close,
    decide_phase,
    decide_situation,
    decide_star,
    decide_who5,
    discharged_early,
    evolve,
    planned_phase_moves,
)
from shared.domain.caseload import (
    Caseload,
    assigned_method,
    caseload_from_doc,
    caseload_to_doc,
    decide_assignment,
    decide_offers,
    decide_release,
    decide_wait_on_enrolment,
    evolve_caseload,
)
from shared.domain.programme import Programme, course_dates, due_phase_moves, evolve_programme
from shared.domain.staffing import decide_add_worker, decide_capacity, decide_programme_change
from shared.domain.status import course_status, who5_scores
from shared.events import DomainEvent

COPENHAGEN = ev.ProgrammeDefined(
    name="Exit prostitution",
    methods=("cti",),
    course_months=12,
    phases=(("phase_1", 4), ("phase_2", 4), ("phase_3", 4)),
    recruitment_start=date(2016, 1, 1),
    recruitment_end=date(2016, 3, 31),
    funding_end=date(2016, 12, 31),
    caseload_limit=10,
    assessment_interval_months=2,
    scale_areas=("housing", "mental_health", "finances"),
    scale_min=1,
    scale_max=10,
    purposes=("exit_prostitution", "improve_life_situation"),
    targets={"cti": 20},
)


def programme(*changes: DomainEvent) -> Programme:
    p = evolve_programme(None, "cph", COPENHAGEN)
    for change in changes:
        p = evolve_programme(p, "cph", change)
    return p


def enrolled_case(on: date, p: Programme | None = None) -> Case:
    p = p or programme()
    case = evolve(None, "case-1", ev.ReferralReceived("cph", "reden", True), date(2015, 12, 1))
    case = evolve(case, "case-1", ev.AssessmentStarted(), date(2015, 12, 10))
    for event in decide_star(case, p, {"housing": 3}, on, None, must_enrol=True):
        case = evolve(case, "case-1", event, on)
    return case


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2016, 1, 31), 1, date(2016, 2, 29)),  # month end into a leap February
        (date(2015, 1, 31), 1, date(2015, 2, 28)),
        (date(2016, 2, 29), 12, date(2017, 2, 28)),  # leap day + a year
        (date(2016, 3, 31), 1, date(2016, 4, 30)),
        (date(2016, 11, 30), 3, date(2017, 2, 28)),
        (date(2016, 5, 15), 9, date(2017, 2, 15)),
    ],
)
def test_add_months_clamps_to_the_month_end(day: date, months: int, expected: date) -> None:
    assert add_months(day, months) == expected


@pytest.mark.parametrize(
    ("enrolled", "planned_end", "truncated", "actual_months"),
    [
        (date(2016, 1, 1), date(2016, 12, 31), True, 12.0),  # 1 Jan + 12 months is 1 Jan 2017: one day cut
        (date(2016, 1, 31), date(2016, 12, 31), True, 11.0),  # month end
        (date(2016, 2, 1), date(2016, 12, 31), True, 11.0),  # the example: about 11 months, not 12
        (date(2016, 2, 29), date(2016, 12, 31), True, 10.1),  # leap day
        (date(2016, 3, 31), date(2016, 12, 31), True, 9.0),  # last day of recruitment
    ],
)
def test_the_funding_end_cuts_courses_short(
    enrolled: date, planned_end: date, truncated: bool, actual_months: float
) -> None:
    dates = course_dates(programme(), enrolled)
    assert dates.full_end == add_months(enrolled, 12)
    assert (dates.planned_end, dates.truncated, dates.planned_months, dates.actual_months) == (
        planned_end,
        truncated,
        12,
        actual_months,
    )


def test_a_funding_extension_moves_every_planned_end() -> None:
    extended = programme(ev.ProgrammeChanged(funding_end=date(2017, 6, 30)))
    assert course_dates(extended, date(2016, 2, 1)).planned_end == date(2017, 2, 1)
    assert not course_dates(extended, date(2016, 2, 1)).truncated
    assert course_dates(extended, date(2016, 2, 29)).planned_end == date(2017, 2, 28)
    case = enrolled_case(date(2016, 2, 1), extended)
    assert course_status(case, extended, None, date(2016, 3, 1))["course"]["planned_end"] == "2017-02-01"
    assert course_status(case, programme(), None, date(2016, 3, 1))["course"]["planned_end"] == "2016-12-31"


def test_months_between_counts_calendar_months() -> None:
    assert months_between(date(2016, 1, 31), date(2016, 2, 29)) == 1.0
    assert months_between(date(2016, 2, 1), date(2016, 12, 31)) == pytest.approx(10 + 30 / 31)
    with pytest.raises(ValueError):
        months_between(date(2016, 2, 1), date(2016, 1, 1))


def test_enrolment_is_the_first_star_and_its_date() -> None:
    case = enrolled_case(date(2016, 2, 29))
    assert case.status is CaseStatus.ENROLLED
    assert case.enrolled_on == date(2016, 2, 29)
    assert case.method == "cti" and case.phase == "phase_1"
    assert case.status_on(date(2016, 2, 28)) is CaseStatus.IN_ASSESSMENT
    assert case.status_on(date(2016, 2, 29)) is CaseStatus.ENROLLED


def test_every_field_of_a_case_survives_its_stored_form() -> None:
    """The caseflow read model stores a case as orjson writes its dataclass; ``Case.from_stored`` must read every
    field back as it was, so the case here sets every one (a field missed there fails the comparison)."""
    day = date(2016, 2, 1)
    received = ev.ReferralReceived(
        "cph", "reden", True, "citizen-1", "sealed-alias", None, "18_24", None, "match", reopened_from="case-0"
    )
    case = evolve(None, "case-1", received, date(2015, 12, 1))
    case = evolve(case, "case-1", ev.AssessmentStarted(), date(2015, 12, 10))
    events = [
        ev.CitizenEnrolled(method="cti", first_phase="phase_1"),
        ev.StarRecorded(scores={"housing": 3, "finances": 7}),
        ev.Who5Recorded((3, 2, 4, 1, 5)),
        ev.PurposeRecorded("improve_life_situation"),
        ev.GoalAdded("goal-1", "housing", "own flat"),
        ev.GoalAdded("goal-2", "health", "see a doctor"),
        ev.GoalAchieved("goal-1"),
        ev.ContactRecorded("phone"),
        ev.HousingChanged("permanent"),
        ev.AddictionTreatmentChanged(True),
        ev.JobCentreCategoryChanged("activity_ready"),
        ev.PhaseEntered("phase_2", "housing found", scheduled=False),
        ev.CourseClosed("completed"),
        ev.CourseReopened("case-2"),
    ]
    for n, event in enumerate(events):
        case = evolve(case, "case-1", event, day + timedelta(days=n))
    defaults = Case("", "", "", day, False, CaseStatus.REFERRED, (), 0)
    unset = [f.name for f in dataclasses.fields(Case) if getattr(case, f.name) == getattr(defaults, f.name)]
    assert unset == []  # the case exercises every field
    document = orjson.loads(orjson.dumps(case))
    # orjson writes a dataclass's attributes as they are: the fields, in order, and nothing a rule might have added
    assert list(document) == [f.name for f in dataclasses.fields(Case)]
    stored = Case.from_stored(document)
    assert stored == case
    assert vars(stored) == vars(case)


def test_a_folded_case_is_one_its_constructor_would_build() -> None:
    """evolve copies fields instead of calling __init__ (speed): the result must be what __init__ gives."""
    case = enrolled_case(date(2016, 2, 1))
    for event in (ev.Who5Recorded((3, 3, 3, 3, 3)), ev.HousingChanged("permanent"), ev.CourseClosed("completed")):
        case = evolve(case, "case-1", event, date(2016, 6, 1))
    rebuilt = Case(**{f.name: getattr(case, f.name) for f in dataclasses.fields(Case)})
    assert rebuilt == case
    assert vars(rebuilt) == vars(case)  # no attribute the constructor would not set
    assert case.version == 7 and case.status is CaseStatus.CLOSED
    assert Case.from_stored(orjson.loads(orjson.dumps(case))) == case  # the read model's stored form


@pytest.mark.parametrize("outside", [date(2015, 12, 31), date(2016, 4, 1)])
def test_enrolment_outside_the_recruitment_window_is_refused(outside: date) -> None:
    with pytest.raises(Refused) as refused:
        enrolled_case(outside)
    assert refused.value.code == "outside_recruitment_window"
    assert "2016-01-01 to 2016-03-31" in refused.value.message


def test_scores_must_fit_the_programmes_scale() -> None:
    case = enrolled_case(date(2016, 2, 1))
    with pytest.raises(Invalid) as invalid:
        decide_star(case, programme(), {"housing": 11, "offending": 3}, date(2016, 4, 1), None, must_enrol=False)
    assert set(invalid.value.fields) == {"scores.housing", "scores.offending"}
    partial = decide_star(case, programme(), {"finances": 1}, date(2016, 4, 1), None, must_enrol=False)
    assert partial == [ev.StarRecorded({"finances": 1})]  # a partial star is fine
    with pytest.raises(Refused, match="enrolled on 2016-02-01"):
        decide_star(case, programme(), {"finances": 1}, date(2016, 4, 1), None, must_enrol=True)


def test_measurements_and_situations_come_in_date_order() -> None:
    """Reports take the last recorded star, WHO-5 or situation as the latest: one recorded later with an earlier
    date is refused, as status changes are; the same day or later is fine, and contacts come in any order."""
    p = programme()
    case = enrolled_case(date(2016, 2, 1))  # its first star: 1 February
    may = date(2016, 5, 1)
    for event in (ev.StarRecorded({"housing": 8}), ev.Who5Recorded((4, 4, 4, 4, 4)), ev.HousingChanged("permanent")):
        case = evolve(case, "case-1", event, may)
    march = date(2016, 3, 1)
    for decide in (
        lambda on: decide_star(case, p, {"housing": 4}, on, None, must_enrol=False),
        lambda on: decide_who5(case, (1, 1, 1, 1, 1), on),
        lambda on: decide_situation(case, ev.HousingChanged("homeless"), on),
    ):
        with pytest.raises(Refused) as refused:
            decide(march)
        assert refused.value.code == "date_before_last_record" and "2016-05-01" in refused.value.message
        assert decide(may) and decide(date(2016, 6, 1))
    assert decide_situation(case, ev.ContactRecorded("phone"), march) == ev.ContactRecorded("phone")


def test_phases_follow_the_plan_from_enrolment_and_from_explicit_moves() -> None:
    p = programme()
    case = enrolled_case(date(2016, 2, 29))
    # Plan 4/4/4 months: phase 2 falls due 29 Jun, phase 3 on 29 Oct.
    assert due_phase_moves(p, "phase_1", date(2016, 2, 29), date(2016, 6, 28)) == []
    assert due_phase_moves(p, "phase_1", date(2016, 2, 29), date(2016, 11, 1)) == [
        ("phase_2", date(2016, 6, 29)),
        ("phase_3", date(2016, 10, 29)),
    ]
    early = decide_phase(case, p, "phase_2", "housing found early", date(2016, 5, 2))
    case = evolve(case, "case-1", early, date(2016, 5, 2))
    assert not early.scheduled
    assert due_phase_moves(p, "phase_2", date(2016, 5, 2), date(2016, 12, 31)) == [("phase_3", date(2016, 9, 2))]
    # Each move the same day the plan's months after the phase it counts from, not after a month-end clamp.
    assert due_phase_moves(p, "phase_1", date(2016, 10, 31), date(2017, 12, 31)) == [
        ("phase_2", date(2017, 2, 28)),
        ("phase_3", date(2017, 6, 30)),
    ]
    assert case.phase_on(date(2016, 2, 28)) is None
    assert case.phase_on(date(2016, 5, 1)) == "phase_1"
    assert case.phase_on(date(2016, 5, 2)) == "phase_2"
    for code, phase, on in (
        ("same_phase", "phase_2", date(2016, 6, 1)),
        ("date_before_last_phase", "phase_3", date(2016, 5, 1)),
        ("phase_before_current", "phase_1", date(2016, 6, 1)),  # the phases are a sequence
    ):
        with pytest.raises(Refused) as refused:
            decide_phase(case, p, phase, "x", on)
        assert refused.value.code == code
    with pytest.raises(Invalid):
        decide_phase(case, p, "phase_9", "x", date(2016, 6, 1))


def test_the_plan_counts_from_a_workers_last_move_whatever_days_the_scheduler_runs() -> None:
    """Phase 2 falls due on 29 February (31 January + 1 month, clamped); phase 3 is 31 January + 2 months, 31
    March, whether the scheduler ran every day (and wrote phase 2 on the 29th) or once in April."""
    p = evolve_programme(
        None, "cph", dataclasses.replace(COPENHAGEN, phases=(("phase_1", 1), ("phase_2", 1), ("phase_3", 10)))
    )
    start = enrolled_case(date(2016, 1, 31), p)

    def scheduler(case: Case, days: list[date]) -> Case:
        for day in days:
            for phase, due in planned_phase_moves(case, p, day):
                case = evolve(case, "case-1", ev.PhaseEntered(phase, "phase plan", scheduled=True), due)
        return case

    daily = scheduler(start, [date(2016, 2, 1) + timedelta(days=n) for n in range(90)])
    once = scheduler(start, [date(2016, 4, 30)])
    expected = [(date(2016, 1, 31), "phase_1"), (date(2016, 2, 29), "phase_2"), (date(2016, 3, 31), "phase_3")]
    assert [(c.on, c.phase) for c in daily.phases] == expected
    assert [(c.on, c.phase) for c in once.phases] == expected
    # A worker's own move starts the count again.
    early = evolve(start, "case-1", decide_phase(start, p, "phase_2", "early", date(2016, 2, 10)), date(2016, 2, 10))
    assert planned_phase_moves(early, p, date(2016, 12, 31)) == [("phase_3", date(2016, 3, 10))]


def test_pre_cti_ends_when_a_worker_moves_the_course_to_phase_1_not_on_a_date() -> None:
    """DOMAIN.md: CTI proper starts when the citizen has a home or a tenancy agreement."""
    phases = (("pre_cti", 2), ("phase_1", 4), ("phase_2", 3), ("phase_3", 3))
    p = evolve_programme(None, "cph", dataclasses.replace(COPENHAGEN, phases=phases))
    case = enrolled_case(date(2016, 2, 1), p)
    assert case.phase == "pre_cti" and planned_phase_moves(case, p, date(2016, 12, 31)) == []
    housed = evolve(case, "case-1", decide_phase(case, p, "phase_1", "tenancy", date(2016, 5, 10)), date(2016, 5, 10))
    assert planned_phase_moves(housed, p, date(2016, 12, 31)) == [
        ("phase_2", date(2016, 9, 10)),
        ("phase_3", date(2016, 12, 10)),
    ]


def test_only_a_cti_course_runs_in_phases() -> None:
    """DOMAIN.md: the phases (and pre-CTI before them) are CTI's; ICM and ACT are other housing-support methods a
    programme may run beside it. Their courses get no first phase, no scheduled moves and no phase moves."""
    phases = (("pre_cti", 2), ("phase_1", 3), ("phase_2", 3), ("phase_3", 3))
    p = evolve_programme(None, "bal", dataclasses.replace(COPENHAGEN, methods=("cti", "icm", "act"), phases=phases))
    referred = evolve(None, "case-1", ev.ReferralReceived("bal", "reden", True), date(2015, 12, 1))
    referred = evolve(referred, "case-1", ev.AssessmentStarted(), date(2015, 12, 10))
    on = date(2016, 2, 1)
    for method, first_phase in (("cti", "pre_cti"), ("icm", None), ("act", None)):
        enrolment, _ = decide_star(referred, p, {"housing": 3}, on, method, must_enrol=True)
        assert enrolment == ev.CitizenEnrolled(method=method, first_phase=first_phase)
    icm = referred
    for event in decide_star(referred, p, {"housing": 3}, on, "icm", must_enrol=True):
        icm = evolve(icm, "case-1", event, on)
    assert (icm.status, icm.method, icm.phases, icm.phase) == (CaseStatus.ENROLLED, "icm", (), None)
    with pytest.raises(Refused) as refused:
        decide_phase(icm, p, "phase_1", "housed", date(2016, 3, 1))
    assert refused.value.code == "no_phase_plan"
    assert planned_phase_moves(icm, p, date(2016, 12, 31)) == []
    view = course_status(icm, p, None, date(2016, 3, 1))
    assert (view["phase"], view["phase_da"], view["next_phase"]) == (None, None, None)
    # A phase move an older version's scheduler appended to an ICM course did not happen.
    moved = evolve(icm, "case-1", ev.PhaseEntered("phase_1", "phase plan", scheduled=True), date(2016, 5, 1))
    assert moved.phases == () and moved.version == icm.version + 1


def test_a_closure_dated_back_voids_the_scheduled_moves_after_it_and_not_a_workers_own() -> None:
    p = programme()
    case = enrolled_case(date(2016, 2, 29))
    # The scheduler wrote phase 2 when it fell due (29 Jun); the citizen had left on 20 Jun, recorded later.
    for phase, due in due_phase_moves(p, "phase_1", date(2016, 2, 29), date(2016, 7, 1)):
        case = evolve(case, "case-1", ev.PhaseEntered(phase, "phase plan", scheduled=True), due)
    assert case.phase == "phase_2"
    closed = evolve(case, "case-1", decide_close(case, p, "dropped_out", date(2016, 6, 20)), date(2016, 6, 20))
    assert [(c.on, c.phase) for c in closed.phases] == [(date(2016, 2, 29), "phase_1")]
    assert closed.phase == "phase_1" and closed.phase_on(date(2016, 7, 1)) == "phase_1"
    # A closure on the day a scheduled move fell due keeps it: the course was in phase 2 that day.
    on_the_day = evolve(case, "case-1", ev.CourseClosed("completed"), date(2016, 6, 29))
    assert on_the_day.phase == "phase_2"
    # A worker's own move is something that happened: a closure cannot be dated before it.
    moved = evolve(case, "case-1", decide_phase(case, p, "phase_3", "early", date(2016, 7, 5)), date(2016, 7, 5))
    with pytest.raises(Refused) as refused:
        decide_close(moved, p, "dropped_out", date(2016, 7, 1))
    assert refused.value.code == "date_before_last_phase"
    assert decide_close(moved, p, "dropped_out", date(2016, 7, 5)).reason == "dropped_out"


def test_the_next_star_is_due_an_interval_after_the_last() -> None:
    case = enrolled_case(date(2016, 1, 31))
    status = course_status(case, programme(), None, date(2016, 3, 30))
    assert status["next_assessment_due"] == "2016-03-31"  # 31 Jan + 2 months
    assert status["assessment_overdue"] is False
    assert course_status(case, programme(), None, date(2016, 4, 1))["assessment_overdue"] is True


def test_who5_scores() -> None:
    assert who5_scores((5, 5, 5, 5, 5)) == {"raw": 25, "percentage": 100}
    assert who5_scores((1, 2, 1, 2, 1)) == {"raw": 7, "percentage": 28}


def test_capacity_and_the_waitlist() -> None:
    p = programme(ev.WorkerJoined("anna", "cti", capacity=1), ev.WorkerJoined("bo", "cti"))
    assert (p.capacity_of("anna"), p.capacity_of("bo")) == (1, 10)
    load = Caseload("cph")
    first, second = enrolled_case(date(2016, 2, 1)), enrolled_case(date(2016, 2, 2))
    second = Case(**{**second.__dict__, "case_id": "case-2"})
    for event in decide_assignment(load, p, first, "anna", False, date(2016, 2, 3)):
        load = evolve_caseload(load, event, date(2016, 2, 3))
    with pytest.raises(Refused) as full:
        decide_assignment(load, p, second, "anna", False, date(2016, 2, 3))
    assert full.value.code == "worker_at_capacity" and "1 of 1" in full.value.message
    [waitlisted] = decide_assignment(load, p, second, "anna", True, date(2016, 2, 3))
    assert waitlisted == ev.CaseWaitlisted("case-2", method="cti")  # anna's: the citizen waits for a CTI slot
    load = evolve_caseload(load, waitlisted, date(2016, 2, 3))
    assert load.waitlist == (("case-2", date(2016, 2, 3)),) and load.waiting_for == {"case-2": "cti"}
    assert caseload_from_doc(orjson.loads(orjson.dumps(caseload_to_doc(load)))) == load
    with pytest.raises(Refused, match="already on the waitlist"):
        decide_assignment(load, p, second, "anna", True, date(2016, 2, 3))
    with pytest.raises(Refused) as lower:
        decide_capacity(p, load, "anna", 0)
    assert lower.value.code == "capacity_below_caseload"
    # Only anna's slot counts: bo is free, so the waitlisted citizen is offered to bo at once.
    assert decide_offers(load, p, {}, date(2016, 2, 3)) == [ev.CaseAssigned("case-2", "bo", "waitlist")]
    assert decide_offers(load, p, {}, date(2017, 1, 1)) == []  # after the funding end: no course runs, none is offered
    # Closing anna's course frees her slot in the same append.
    assert decide_release(load, "case-1", "course_closed", date(2016, 3, 1)) == [
        ev.CaseReleased("case-1", "anna", "course_closed")
    ]
    # Closing the waiting citizen's course takes them off the waitlist, and what they waited for with them.
    [left] = decide_release(load, "case-2", "course_closed", date(2016, 3, 1))
    assert left == ev.CaseLeftWaitlist("case-2", "course_closed")
    closed = evolve_caseload(load, left, date(2016, 3, 1))
    assert (closed.waitlist, closed.waiting_for) == ((), {})


def test_a_waiting_citizen_keeps_their_place_when_their_wait_moves_to_another_method() -> None:
    """Waiting for anna (CTI), a citizen asked for frej (ICM, full too) waits for an ICM slot from then on, from
    the date they first waited; asked for a worker of the method they already wait for, they are refused. A
    course that enrols while waiting waits for its own method."""
    p = programme(ev.WorkerJoined("anna", "cti", capacity=1), ev.WorkerJoined("frej", "icm", capacity=1))
    p = dataclasses.replace(p, methods=("cti", "icm"))
    load = Caseload("cph")
    for busy, worker in (("busy-1", "anna"), ("busy-2", "frej")):
        load = evolve_caseload(load, ev.CaseAssigned(busy, worker, "request"), date(2016, 1, 5))
    assessing = Case(**{**enrolled_case(date(2016, 2, 1)).__dict__, "case_id": "case-2"})
    assessing = Case(**{**assessing.__dict__, "status": CaseStatus.IN_ASSESSMENT, "method": None})
    [waitlisted] = decide_assignment(load, p, assessing, "anna", True, date(2016, 2, 3))
    load = evolve_caseload(load, waitlisted, date(2016, 2, 3))
    with pytest.raises(Refused) as again:
        decide_assignment(load, p, assessing, "anna", True, date(2016, 2, 4))
    assert again.value.code == "already_waitlisted"
    [moved] = decide_assignment(load, p, assessing, "frej", True, date(2016, 2, 4))
    assert moved == ev.WaitingForChanged("case-2", "icm")
    load = evolve_caseload(load, moved, date(2016, 2, 4))
    assert (load.waitlist, load.waiting_for) == ((("case-2", date(2016, 2, 3)),), {"case-2": "icm"})
    assert decide_wait_on_enrolment(load, "case-2", "icm") == []
    assert decide_wait_on_enrolment(load, "case-2", "cti") == [ev.WaitingForChanged("case-2", "cti")]
    assert decide_wait_on_enrolment(load, "busy-1", "cti") == []  # not waiting
    # Enrolled in CTI while its wait still names ICM (a wait recorded before enrolments moved it): asked for a
    # full CTI worker, it is already waiting for what applies, its course's method.
    enrolled = Case(**{**assessing.__dict__, "status": CaseStatus.ENROLLED, "method": "cti"})
    with pytest.raises(Refused) as applies:
        decide_assignment(load, p, enrolled, "anna", True, date(2016, 2, 5))
    assert applies.value.code == "already_waitlisted"


def test_a_workers_capacity_never_exceeds_the_programmes_caseload_limit() -> None:
    """The limit (10 in Copenhagen) is per relation worker: a part-timer may have less, nobody more."""
    p = programme(ev.WorkerJoined("anna", "cti", capacity=4))
    with pytest.raises(Invalid) as above:
        decide_add_worker(p, "bo", "cti", 11)
    assert above.value.fields == {"capacity": ["at most the programme's caseload limit per worker, 10"]}
    with pytest.raises(Invalid):
        decide_capacity(p, Caseload("cph"), "anna", 11)
    assert decide_capacity(p, Caseload("cph"), "anna", 10).capacity == 10
    # A capacity above the limit from an older log, or a limit lowered later: the limit holds.
    assert programme(ev.WorkerJoined("bo", "cti", capacity=15)).capacity_of("bo") == 10
    lowered = programme(ev.WorkerJoined("anna", "cti", capacity=8), ev.ProgrammeChanged(caseload_limit=6))
    assert lowered.capacity_of("anna") == 6
    # Such an older log may hold anna with 11 citizens: that refuses no change that does not lower her capacity.
    older = programme(ev.WorkerJoined("anna", "cti", capacity=12), ev.WorkerJoined("bo", "cti"))
    load = Caseload("cph", assignments={f"case-{n}": "anna" for n in range(11)})
    extension = ev.ProgrammeChanged(funding_end=date(2017, 6, 30))
    assert decide_programme_change(older, load, extension) == extension
    assert decide_capacity(older, load, "bo", 5).capacity == 5
    with pytest.raises(Refused, match="anna works with 11"):
        decide_programme_change(older, load, ev.ProgrammeChanged(caseload_limit=9))


def test_the_citizen_waiting_longest_is_offered_a_free_slot_first() -> None:
    """By the date each began to wait, not the order the waitlistings were recorded in."""
    p = programme(ev.WorkerJoined("anna", "cti", capacity=1))
    load = Caseload("cph")
    for case_id, since in (("case-late-recorded", date(2016, 2, 5)), ("case-waiting-longer", date(2016, 2, 1))):
        load = evolve_caseload(load, ev.CaseWaitlisted(case_id), since)
    assert [c for c, _ in load.longest_waiting_first()] == ["case-waiting-longer", "case-late-recorded"]
    assert decide_offers(load, p, {}, date(2016, 2, 5)) == [ev.CaseAssigned("case-waiting-longer", "anna", "waitlist")]


def test_a_course_works_with_a_relation_worker_of_its_own_method() -> None:
    """A programme running CTI and ICM side by side (Ballerup: 20 CTI and 10 ICM courses) has workers of each:
    an ICM course is not assigned, offered or enrolled to a CTI worker."""
    p = evolve_programme(None, "bal", dataclasses.replace(COPENHAGEN, methods=("cti", "icm")))
    for joined in (ev.WorkerJoined("anna", "cti", capacity=1), ev.WorkerJoined("frej", "icm", capacity=1)):
        p = evolve_programme(p, "bal", joined)
    referred = evolve(None, "case-1", ev.ReferralReceived("bal", "reden", True), date(2015, 12, 1))
    assessing = evolve(referred, "case-1", ev.AssessmentStarted(), date(2015, 12, 10))
    icm = assessing
    for event in decide_star(assessing, p, {"housing": 3}, date(2016, 2, 1), "icm", must_enrol=True):
        icm = evolve(icm, "case-1", event, date(2016, 2, 1))
    with pytest.raises(Refused) as mismatch:
        decide_assignment(Caseload("bal"), p, icm, "anna", False, date(2016, 2, 3))
    assert mismatch.value.code == "method_mismatch" and "anna works with CTI" in mismatch.value.message
    assert decide_assignment(Caseload("bal"), p, icm, "frej", False, date(2016, 2, 3)) == [
        ev.CaseAssigned("case-1", "frej", "request")
    ]
    # Assigned in assessment, a case enrols in its worker's method unless asked otherwise, and not in another.
    with_frej = evolve_caseload(Caseload("bal"), ev.CaseAssigned("case-1", "frej", "request"), date(2016, 1, 5))
    worker_method = assigned_method(with_frej, p, "case-1")
    assert worker_method == "icm" and assigned_method(Caseload("bal"), p, "case-1") is None
    enrolment, _ = decide_star(assessing, p, {"housing": 3}, date(2016, 2, 1), None, True, worker_method)
    assert enrolment == ev.CitizenEnrolled(method="icm", first_phase=None)
    with pytest.raises(Refused) as other:
        decide_star(assessing, p, {"housing": 3}, date(2016, 2, 1), "cti", True, worker_method)
    assert other.value.code == "method_mismatch"
    # Waiting: an ICM course for frej's slot only; one not yet enrolled for any free slot, the longest waiting first.
    waiting = Caseload("bal")
    for case_id, since in (("case-icm", date(2016, 2, 1)), ("case-assessing", date(2016, 2, 2))):
        waiting = evolve_caseload(waiting, ev.CaseWaitlisted(case_id), since)
    methods = {"case-icm": "icm", "case-assessing": None}
    assert decide_offers(waiting, p, methods, date(2016, 2, 5)) == [
        ev.CaseAssigned("case-icm", "frej", "waitlist"),
        ev.CaseAssigned("case-assessing", "anna", "waitlist"),
    ]
    frej_busy = evolve_caseload(waiting, ev.CaseAssigned("case-other", "frej", "request"), date(2016, 2, 3))
    assert decide_offers(frej_busy, p, methods, date(2016, 2, 5)) == [
        ev.CaseAssigned("case-assessing", "anna", "waitlist")
    ]
    # The one waiting longest, not yet enrolled, takes frej's ICM slot, not the CTI slot a CTI course behind
    # them needs: both are placed.
    methods = {"case-icm": "cti", "case-assessing": None}  # case-icm waits longest: here a CTI course
    first = evolve_caseload(Caseload("bal"), ev.CaseWaitlisted("case-assessing"), date(2016, 2, 1))
    first = evolve_caseload(first, ev.CaseWaitlisted("case-icm"), date(2016, 2, 2))
    assert decide_offers(first, p, methods, date(2016, 2, 5)) == [
        ev.CaseAssigned("case-assessing", "frej", "waitlist"),
        ev.CaseAssigned("case-icm", "anna", "waitlist"),
    ]


def test_the_waitlist_is_served_longest_waiting_first_within_what_the_slots_allow() -> None:
    """One CTI slot (anna) and two ICM slots (frej): of u1 (not yet enrolled), c1 (CTI), i1, i2 and i3 (ICM),
    in the order they began to wait, three can be placed: u1, c1 and i1, not i2 in c1's stead."""
    p = evolve_programme(None, "bal", dataclasses.replace(COPENHAGEN, methods=("cti", "icm")))
    for joined in (ev.WorkerJoined("anna", "cti", capacity=1), ev.WorkerJoined("frej", "icm", capacity=2)):
        p = evolve_programme(p, "bal", joined)
    methods = {"u1": None, "c1": "cti", "i1": "icm", "i2": "icm", "i3": "icm"}
    waiting = Caseload("bal")
    for n, case_id in enumerate(methods):
        waiting = evolve_caseload(waiting, ev.CaseWaitlisted(case_id), date(2016, 2, 1) + timedelta(days=n))
    assert decide_offers(waiting, p, methods, date(2016, 3, 1)) == [
        ev.CaseAssigned("u1", "frej", "waitlist"),
        ev.CaseAssigned("c1", "anna", "waitlist"),
        ev.CaseAssigned("i1", "frej", "waitlist"),
    ]


def test_an_enrolment_takes_a_method_a_relation_worker_of_the_programme_works_with() -> None:
    """A course in a method nobody works with could never be assigned a worker, nor offered a slot."""
    p = evolve_programme(None, "bal", dataclasses.replace(COPENHAGEN, methods=("cti", "icm")))
    referred = evolve(None, "case-1", ev.ReferralReceived("bal", "reden", True), date(2015, 12, 1))
    assessing = evolve(referred, "case-1", ev.AssessmentStarted(), date(2015, 12, 10))
    # No workers yet: any method the programme offers (they join later).
    enrolment, _ = decide_star(assessing, p, {"housing": 3}, date(2016, 2, 1), None, must_enrol=True)
    assert enrolment == ev.CitizenEnrolled(method="cti", first_phase="phase_1")
    staffed = evolve_programme(p, "bal", ev.WorkerJoined("frej", "icm"))  # ICM only
    enrolment, _ = decide_star(assessing, staffed, {"housing": 3}, date(2016, 2, 1), None, must_enrol=True)
    assert enrolment == ev.CitizenEnrolled(method="icm", first_phase=None)
    with pytest.raises(Refused) as nobody:
        decide_star(assessing, staffed, {"housing": 3}, date(2016, 2, 1), "cti", must_enrol=True)
    assert nobody.value.code == "no_worker_of_method" and "CTI" in nobody.value.message


def test_status_changes_come_in_date_order() -> None:
    case = evolve(None, "case-1", ev.ReferralReceived("cph", "reden", True), date(2016, 1, 10))
    case = evolve(case, "case-1", ev.AssessmentStarted(), date(2016, 1, 20))
    with pytest.raises(Refused) as early:
        decide_star(case, programme(), {"housing": 3}, date(2016, 1, 15), None, must_enrol=True)
    assert early.value.code == "date_before_last_change"


def test_a_funding_end_before_the_enrolment_leaves_a_course_of_no_months() -> None:
    """Refused as a change now, but a log may hold one from before: the course's dates are still dates."""
    cut = programme(ev.ProgrammeChanged(funding_end=date(2016, 1, 31)))
    dates = course_dates(cut, date(2016, 2, 15))
    assert (dates.planned_end, dates.truncated, dates.actual_months) == (date(2016, 2, 15), True, 0.0)


def test_a_course_closes_for_the_funding_end_only_once_the_funding_has_ended() -> None:
    """Before it, the course ended for another reason (and is counted as that: completed, dropped out...)."""
    p = programme()  # funding ends 31 December 2016
    case = enrolled_case(date(2016, 2, 1))
    with pytest.raises(Refused) as early:
        decide_close(case, p, "funding_ended", date(2016, 12, 30))
    assert early.value.code == "before_funding_end" and "2016-12-31" in early.value.message
    end = date(2016, 12, 31)  # the course's planned end, which the closure keeps
    assert decide_close(case, p, "funding_ended", end) == ev.CourseClosed("funding_ended", end)
    assert decide_close(case, p, "moved", date(2016, 12, 30)) == ev.CourseClosed("moved", end)
    cut = programme(ev.ProgrammeChanged(funding_end=date(2016, 6, 30)))  # a cut: the new end is the course's
    assert decide_close(case, cut, "funding_ended", date(2016, 6, 30)) == ev.CourseClosed(
        "funding_ended", date(2016, 6, 30)
    )


def test_a_course_closed_before_its_planned_end_was_discharged_early_whatever_the_reason() -> None:
    """CTI fidelity: no discharge before the course ends, against the planned end the closure recorded (a
    funding extension afterwards does not make a course that ran its time early). Closures recorded before the
    planned end was kept with them are judged by their reason, as they were then."""
    p = programme()
    case = enrolled_case(date(2016, 2, 1))  # planned end: the funding end, 31 December 2016
    three_weeks = decide_close(case, p, "completed", date(2016, 2, 22))
    assert discharged_early(three_weeks, date(2016, 2, 22))
    for reason in ("moved", "funding_ended"):
        assert not discharged_early(decide_close(case, p, reason, date(2016, 12, 31)), date(2016, 12, 31))
    assert [discharged_early(ev.CourseClosed(reason), date(2016, 3, 1)) for reason in ("completed", "moved")] == [
        False,
        True,
    ]
