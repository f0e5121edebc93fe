"""Caseflow's own jobs: phase moves that fall due, and overdue assessments per worker (real RQ workers)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import redis
from flask.testing import FlaskClient

from services.caseflow import policies
from services.caseflow.policies import emit_due_phase_moves
from shared.aggregates import load_case, load_cases, load_programme
from shared.domain.case import Case
from shared.domain.programme import Programme
from shared.events.envelope import today
from shared.eventstore import EventStore
from tests.conftest import STAFF
from tests.support import counting_round_trips, run_workers, suite_queue
from tests.test_course_api import enrolled, in_assessment, post, refused


def phase_moves(store: EventStore, case: str) -> list[tuple[str, str, bool]]:
    return [
        (e.payload.phase, e.occurred_on.isoformat(), e.payload.scheduled)  # type: ignore[attr-defined]
        for e in store.read_stream(case)
        if e.event_type == "PhaseEntered"
    ]


def test_due_phase_moves_are_emitted_by_the_scheduled_job_once(
    intake: FlaskClient, cph: str, store: EventStore, connection: redis.Redis
) -> None:
    leap = enrolled(intake, on="2016-02-29")
    early = enrolled(intake, on="2016-03-31")
    post(intake, f"/cases/{early}/phase", {"on": "2016-05-02", "phase": "phase_2", "reason": "housed early"})
    run_workers(connection, "caseflow")  # the job finds enrolled courses through the projection
    queue = suite_queue(connection, "caseflow")
    for _ in range(2):  # a second run, or a second scheduler, adds nothing
        queue.enqueue("services.caseflow.jobs.emit_due_phase_moves", "2016-11-01")
        run_workers(connection, "caseflow")
    # Plan 4/4/4 from 29 Feb: phase 2 on 29 Jun, phase 3 on 29 Oct, dated when they fell due.
    assert phase_moves(store, leap) == [("phase_2", "2016-06-29", True), ("phase_3", "2016-10-29", True)]
    # An explicit early move resets the plan: phase 3 four months after it.
    assert phase_moves(store, early) == [("phase_2", "2016-05-02", False), ("phase_3", "2016-09-02", True)]
    status = intake.get(f"/cases/{leap}", headers=STAFF).get_json()
    assert status["phase"] == "phase_3" and status["next_phase"] is None


def test_a_run_that_decided_on_an_older_state_skips_that_course_and_goes_on(
    intake: FlaskClient, cph: str, store: EventStore, connection: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs on different dates that both read the courses before either wrote: the later run's moves for a
    course begin with those the earlier one wrote, so its append is a partial duplicate. It skips that course
    (the next run decides on the log as it is), and still moves the others."""
    first, second = enrolled(intake, on="2016-02-29"), enrolled(intake, on="2016-03-31")
    run_workers(connection, "caseflow")
    as_read = {case: load_case(store, case) for case in (first, second)}
    assert emit_due_phase_moves(store, "cf", on=date(2016, 7, 1)) == 1  # the first course's phase 2, 29 June
    monkeypatch.setattr(policies, "load_case", lambda _, case_id: as_read[case_id])
    assert emit_due_phase_moves(store, "cf", on=date(2016, 11, 1)) == 1  # the second course's phase 2, 31 July
    assert phase_moves(store, second) == [("phase_2", "2016-07-31", True)]
    monkeypatch.undo()
    assert emit_due_phase_moves(store, "cf", on=date(2016, 11, 1)) == 1  # the first course's phase 3, decided anew
    assert phase_moves(store, first) == [("phase_2", "2016-06-29", True), ("phase_3", "2016-10-29", True)]


def test_a_closure_recorded_late_voids_the_scheduled_moves_after_it_in_every_read_model(
    intake: FlaskClient, reporting: FlaskClient, cph: str, store: EventStore, connection: redis.Redis
) -> None:
    """The citizen left on 20 June; the scheduler had meanwhile moved the course to phase 2 (due 29 June), and
    the worker records the closure in July, dated when it happened. The course never was in phase 2."""
    left, moved = enrolled(intake, on="2016-02-29"), enrolled(intake, on="2016-02-29")
    post(intake, f"/cases/{moved}/phase", {"on": "2016-05-02", "phase": "phase_2", "reason": "housed early"})
    post(intake, f"/programmes/{cph}/workers", {"worker_id": "anna", "method": "cti", "on": "2016-01-02"})
    post(intake, f"/cases/{left}/assignment", {"worker_id": "anna", "on": "2016-03-01"})
    run_workers(connection, "caseflow")
    assert emit_due_phase_moves(store, "cf", on=date(2016, 7, 1)) == 1
    post(intake, f"/cases/{left}/closure", {"on": "2016-06-20", "reason": "dropped_out"})
    # A worker's own move happened: a closure dated before it is refused, and nothing is written.
    refused(
        intake, f"/cases/{moved}/closure", {"on": "2016-05-01", "reason": "dropped_out"}, 409, "date_before_last_phase"
    )
    run_workers(connection)
    course = intake.get(f"/cases/{left}", headers=STAFF).get_json()
    assert (course["status"], course["phase"]) == ("closed", "phase_1")
    assert [p["phase"] for p in course["phases"]] == ["phase_1"]
    assert emit_due_phase_moves(store, "cf", on=date(2016, 11, 1)) == 1  # the open course's phase 3 alone
    assert phase_moves(store, left) == [("phase_2", "2016-06-29", True)]  # in the log still, void in the folds
    assert phase_moves(store, moved) == [("phase_2", "2016-05-02", False), ("phase_3", "2016-09-02", True)]
    run_workers(connection)
    courses = reporting.get(f"/programmes/{cph}/statistics/courses", headers=STAFF).get_json()
    assert courses["phase_reached"] == {"phase_1": 1, "phase_2": 0, "phase_3": 1}
    # Between the closure and the voided move, and after it: the closed course ended in phase 1, the other was in 2.
    for on in ("2016-06-25", "2016-06-30"):
        june = reporting.get(f"/programmes/{cph}/statistics/courses?on={on}", headers=STAFF).get_json()
        assert june["phase_reached"] == {"phase_1": 1, "phase_2": 1, "phase_3": 0}, on
    fidelity = reporting.get(f"/programmes/{cph}/statistics/fidelity?on=2016-12-31", headers=STAFF).get_json()
    spans = {
        c["case_id"]: [p["phase"] for p in c["contacts_per_phase"]] for w in fidelity["workers"] for c in w["courses"]
    }
    assert spans[left] == ["phase_1"]


def test_overdue_assessments_are_listed_per_worker(intake: FlaskClient, cph: str, connection: redis.Redis) -> None:
    post(intake, f"/programmes/{cph}/workers", {"worker_id": "anna", "method": "cti", "on": "2016-01-02"})
    late, on_time = enrolled(intake, on="2016-02-01"), enrolled(intake, on="2016-03-01")
    for case in (late, on_time):
        post(intake, f"/cases/{case}/assignment", {"worker_id": "anna", "on": "2016-03-01"})
    run_workers(connection, "caseflow")
    url = f"/programmes/{cph}/workers/anna/overdue-assessments?on=2016-04-15"
    overdue = intake.get(url, headers=STAFF).get_json()["overdue"]
    assert overdue == [{"case_id": late, "last_star_on": "2016-02-01", "due": "2016-04-01", "days_overdue": 14}]
    post(intake, f"/cases/{late}/stars", {"on": "2016-04-10", "scores": {"housing": 4}})
    run_workers(connection, "caseflow")
    assert intake.get(url, headers=STAFF).get_json()["overdue"] == []
    bad = intake.get(f"/programmes/{cph}/workers/anna/overdue-assessments?on=soon", headers=STAFF)
    assert bad.status_code == 422 and bad.get_json()["error"]["fields"] == {"on": ["not a date"]}


def test_a_funding_end_cut_while_the_scheduler_decides_lets_no_move_after_it_in(
    intake: FlaskClient, cph: str, store: EventStore, connection: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler read the programme; before its append a coordinator cut the funding end to 31 August. The
    append read-checks the programme, as intake's commands do, so no move dated after the new end gets in: the
    course it was deciding waits for the next run, and the courses after it are decided on the new end."""
    courses = [enrolled(intake, on="2016-02-29") for _ in range(2)]  # plan 4/4/4: 29 June, 29 October
    run_workers(connection, "caseflow")
    cut: list[str] = []

    def read_then_cut(store: EventStore, programme_id: str) -> Programme:
        programme = load_programme(store, programme_id)
        if not cut:
            cut.append(programme_id)
            post(intake, f"/programmes/{programme_id}/changes", {"funding_end": "2016-08-31", "on": "2016-05-01"})
        return programme

    monkeypatch.setattr(policies, "load_programme", read_then_cut)
    assert emit_due_phase_moves(store, "cf", on=date(2016, 11, 1)) == 1
    assert sorted(len(phase_moves(store, case)) for case in courses) == [0, 1]
    assert emit_due_phase_moves(store, "cf", on=date(2016, 11, 1)) == 1
    for case in courses:
        assert phase_moves(store, case) == [("phase_2", "2016-06-29", True)]


def test_a_case_enrolled_while_caseflow_offers_it_a_slot_is_offered_one_of_its_method(
    intake: FlaskClient, cti_and_icm: str, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy read the waiting case still in assessment, waiting for anna's CTI slot, which has just been
    freed; before its append, the case was enrolled in ICM. The append read-checks the case it offers, so anna's
    CTI slot goes to nobody (frej, who works with ICM, is full)."""
    for worker in ("anna", "frej"):
        post(intake, f"/cases/{in_assessment(intake)}/assignment", {"worker_id": worker, "on": "2016-01-25"})
    waiting = in_assessment(intake)
    post(intake, f"/cases/{waiting}/assignment", {"worker_id": "anna", "waitlist_if_full": True, "on": "2016-01-25"})
    post(intake, f"/programmes/{cti_and_icm}/workers/anna/capacity", {"capacity": 2, "on": "2016-01-26"})
    enrolled_meanwhile: list[str] = []

    def read_then_enrol(store: EventStore, case_ids: list[str]) -> dict[str, Case]:
        cases = load_cases(store, case_ids)
        if not enrolled_meanwhile:
            enrolled_meanwhile.append(waiting)
            body = {"on": "2016-02-01", "scores": {"housing": 3}, "method": "icm"}
            post(intake, f"/cases/{waiting}/enrolment", body)
        return cases

    monkeypatch.setattr(policies, "load_cases", read_then_enrol)
    assert policies.offer_free_slots(store, "cf", "demo-cph", on=date(2016, 2, 5)) == 0
    assert enrolled_meanwhile == [waiting]
    assert intake.get(f"/cases/{waiting}", headers=STAFF).get_json()["worker_id"] is None


def test_a_citizen_waitlisted_for_a_worker_waits_for_a_slot_of_that_workers_method(
    intake: FlaskClient, cti_and_icm: str, store: EventStore
) -> None:
    """Not yet enrolled, a citizen waitlisted for anna (CTI) is not offered frej's ICM slot when it frees (the
    course would have been enrolled in ICM, which nobody chose); anna's slot, when it frees, is theirs."""
    for worker in ("anna", "frej"):
        post(intake, f"/cases/{in_assessment(intake)}/assignment", {"worker_id": worker, "on": "2016-01-25"})
    waiting = in_assessment(intake)
    post(intake, f"/cases/{waiting}/assignment", {"worker_id": "anna", "waitlist_if_full": True, "on": "2016-01-25"})
    assert intake.get(f"/cases/{waiting}", headers=STAFF).get_json()["waitlisted_for"] == "cti"
    post(intake, f"/programmes/{cti_and_icm}/workers/frej/capacity", {"capacity": 2, "on": "2016-02-01"})
    assert policies.offer_free_slots(store, "cf", "demo-cph", on=date(2016, 2, 1)) == 0
    still = intake.get(f"/cases/{waiting}", headers=STAFF).get_json()
    assert (still["worker_id"], still["waitlisted_for"]) == (None, "cti")
    post(intake, f"/programmes/{cti_and_icm}/workers/anna/capacity", {"capacity": 2, "on": "2016-02-02"})
    assert policies.offer_free_slots(store, "cf", "demo-cph", on=date(2016, 2, 2)) == 1
    offered = intake.get(f"/cases/{waiting}", headers=STAFF).get_json()
    assert (offered["worker_id"], offered["waitlisted_for"]) == ("anna", None)
    assert offered["assignments"] == [{"worker_id": "anna", "from": "2016-02-02", "until": None, "via": "waitlist"}]


def test_a_waitlisted_citizen_enrols_in_the_method_waited_for_unless_another_is_asked_for(
    intake: FlaskClient, cti_and_icm: str, store: EventStore
) -> None:
    """Waiting for frej (ICM, full), a citizen whose first star names no method enrols in ICM, not in the
    programme's first method; one whose star names CTI enrols in CTI and from then on waits for a CTI slot,
    which anna's free one is."""
    post(intake, f"/cases/{in_assessment(intake)}/assignment", {"worker_id": "frej", "on": "2016-01-25"})
    waiting = [in_assessment(intake) for _ in range(2)]
    for case_id in waiting:
        body = {"worker_id": "frej", "waitlist_if_full": True, "on": "2016-01-25"}
        post(intake, f"/cases/{case_id}/assignment", body)
    star = {"on": "2016-02-01", "scores": {"housing": 3}}
    post(intake, f"/cases/{waiting[0]}/enrolment", star)
    post(intake, f"/cases/{waiting[1]}/enrolment", star | {"method": "cti"})
    views = [intake.get(f"/cases/{case_id}", headers=STAFF).get_json() for case_id in waiting]
    assert [(v["method"], v["waitlisted_for"]) for v in views] == [("icm", "icm"), ("cti", "cti")]
    listed = intake.get(f"/programmes/{cti_and_icm}/caseload", headers=STAFF).get_json()["waitlist"]
    assert [entry["waitlisted_for"] for entry in listed] == ["icm", "cti"]  # the enrolment moved the second's wait
    assert policies.offer_free_slots(store, "cf", "demo-cph", on=date(2016, 2, 2)) == 1
    views = [intake.get(f"/cases/{case_id}", headers=STAFF).get_json() for case_id in waiting]
    assert [(v["worker_id"], v["waitlisted_for"]) for v in views] == [(None, "icm"), ("anna", None)]


def test_a_wait_moves_to_a_worker_of_another_method_keeping_its_place(
    intake: FlaskClient, reporting: FlaskClient, cti_and_icm: str, store: EventStore, connection: redis.Redis
) -> None:
    """Waiting for anna (CTI), a citizen asked for frej (ICM, full too) waits for an ICM slot from then on,
    still from the day they first waited, and the programme's caseload lists it; frej's slot, when it frees,
    is theirs. Asked for frej again, they are told they are already waiting for one."""
    for worker in ("anna", "frej"):
        post(intake, f"/cases/{in_assessment(intake)}/assignment", {"worker_id": worker, "on": "2016-01-25"})
    waiting = in_assessment(intake)
    for worker, on in (("anna", "2016-01-25"), ("frej", "2016-01-27")):
        body = {"worker_id": worker, "waitlist_if_full": True, "on": on}
        post(intake, f"/cases/{waiting}/assignment", body)
    view = intake.get(f"/cases/{waiting}", headers=STAFF).get_json()
    assert (view["waitlisted_since"], view["waitlisted_for"]) == ("2016-01-25", "icm")
    listed = intake.get(f"/programmes/{cti_and_icm}/caseload", headers=STAFF).get_json()["waitlist"]
    assert listed == [{"case_id": waiting, "since": "2016-01-25", "waitlisted_for": "icm"}]
    again = {"worker_id": "frej", "waitlist_if_full": True, "on": "2016-01-28"}
    refused(intake, f"/cases/{waiting}/assignment", again, 409, "already_waitlisted")
    run_workers(connection)  # reporting counts one wait, not a second one when it moved
    waits = reporting.get(f"/programmes/{cti_and_icm}/statistics/caseloads?on=2016-01-28", headers=STAFF).get_json()
    assert (waits["waitlist"], waits["caught_up"]) == (1, True)
    post(intake, f"/programmes/{cti_and_icm}/workers/anna/capacity", {"capacity": 2, "on": "2016-02-01"})
    assert policies.offer_free_slots(store, "cf", "demo-cph", on=date(2016, 2, 1)) == 0  # a CTI slot: not theirs
    post(intake, f"/programmes/{cti_and_icm}/workers/frej/capacity", {"capacity": 2, "on": "2016-02-02"})
    assert policies.offer_free_slots(store, "cf", "demo-cph", on=date(2016, 2, 2)) == 1
    assert intake.get(f"/cases/{waiting}", headers=STAFF).get_json()["worker_id"] == "frej"


def test_a_wait_moved_to_a_method_with_a_free_slot_is_offered_it_by_the_job_the_move_queues(
    intake: FlaskClient, cti_and_icm: str, connection: redis.Redis
) -> None:
    """Gus (ICM) has room while anna (CTI) and frej (ICM) are full. Two citizens wait for anna; one is then asked
    for frej, the other's course enrols in ICM: each move queues an offer job, which gives them gus's slots.
    (Funded past today: the job offers slots today, and none after the funding end.)"""
    funded = {"funding_end": (today() + timedelta(days=365)).isoformat(), "on": "2016-01-02"}
    post(intake, f"/programmes/{cti_and_icm}/changes", funded)
    body = {"worker_id": "gus", "method": "icm", "capacity": 2, "on": "2016-01-02"}
    post(intake, f"/programmes/{cti_and_icm}/workers", body)
    for worker in ("anna", "frej"):
        post(intake, f"/cases/{in_assessment(intake)}/assignment", {"worker_id": worker, "on": "2016-01-25"})
    waiting = [in_assessment(intake) for _ in range(2)]
    for case_id in waiting:
        body = {"worker_id": "anna", "waitlist_if_full": True, "on": "2016-01-25"}
        post(intake, f"/cases/{case_id}/assignment", body)
    run_workers(connection)  # what the waitlistings queued: no CTI slot is free
    assert [intake.get(f"/cases/{c}", headers=STAFF).get_json()["worker_id"] for c in waiting] == [None, None]
    post(intake, f"/cases/{waiting[0]}/assignment", {"worker_id": "frej", "waitlist_if_full": True, "on": "2016-01-26"})
    run_workers(connection)
    assert [intake.get(f"/cases/{c}", headers=STAFF).get_json()["worker_id"] for c in waiting] == ["gus", None]
    post(intake, f"/cases/{waiting[1]}/enrolment", {"on": "2016-02-01", "scores": {"housing": 3}, "method": "icm"})
    run_workers(connection)
    assert [intake.get(f"/cases/{c}", headers=STAFF).get_json()["worker_id"] for c in waiting] == ["gus", "gus"]


def test_the_offer_job_reads_no_waiting_case_while_no_slot_is_free(
    intake: FlaskClient, cti_and_icm: str, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It runs every minute and after every release: with a long waitlist and every worker full, it reads the
    programme and the caseload, not each waiting case (and those it does read, in one round trip)."""
    for worker in ("anna", "frej"):
        post(intake, f"/cases/{in_assessment(intake)}/assignment", {"worker_id": worker, "on": "2016-01-25"})
    for _ in range(5):
        body = {"worker_id": "anna", "waitlist_if_full": True, "on": "2016-01-25"}
        post(intake, f"/cases/{in_assessment(intake)}/assignment", body)
    reads: list[list[str]] = []

    def counting(store: EventStore, case_ids: list[str]) -> dict[str, Case]:
        reads.append(case_ids)
        return load_cases(store, case_ids)

    monkeypatch.setattr(policies, "load_cases", counting)
    assert policies.offer_free_slots(store, "cf", "demo-cph", on=date(2016, 2, 5)) == 0  # nobody has room
    assert reads == []
    post(intake, f"/programmes/{cti_and_icm}/workers/anna/capacity", {"capacity": 2, "on": "2016-02-05"})
    with counting_round_trips() as sent:
        assert policies.offer_free_slots(store, "cf", "demo-cph", on=date(2016, 2, 5)) == 1  # the longest waiting
    assert len(reads) == 1 and len(reads[0]) == 5
    assert "pipeline:" + ",".join(["EVALSHA"] * 5) in sent  # the five waiting cases, in one round trip
