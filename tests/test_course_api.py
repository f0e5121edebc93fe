"""A citizen's whole course over HTTP, and every refusal with its status code and reason (both backends)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from services.intake import courses, service
from shared.domain.caseload import Caseload, assigned_method, last_assignment_change
from shared.domain.programme import Programme
from shared.events.envelope import today
from shared.eventstore import EventStore
from tests.conftest import COPENHAGEN, PARTNER, STAFF, referral_body
from tests.support import auth, run_workers


def post(client: FlaskClient, path: str, body: dict[str, Any] | None = None, status: int = 201) -> dict[str, Any]:
    response = client.post(path, json=body or {}, headers=STAFF)
    assert response.status_code == status, response.get_json()
    result: dict[str, Any] = response.get_json()
    return result


def refused(client: FlaskClient, path: str, body: dict[str, Any], status: int, code: str) -> dict[str, Any]:
    error: dict[str, Any] = post(client, path, body, status)["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error


def referral(client: FlaskClient, **overrides: Any) -> str:
    return str(post(client, "/referrals", referral_body(**overrides))["case_id"])


def in_assessment(client: FlaskClient, on: str = "2016-01-20", **overrides: Any) -> str:
    case = referral(client, **overrides)
    post(client, f"/referrals/{case}/assessment", {"on": on})
    return case


def enrolled(client: FlaskClient, on: str = "2016-02-01") -> str:
    case = in_assessment(client)
    post(client, f"/cases/{case}/enrolment", {"on": on, "scores": {"housing": 3, "finances": 2}})
    return case


@pytest.fixture
def workers(intake: FlaskClient, cph: str) -> str:
    post(
        intake, f"/programmes/{cph}/workers", {"worker_id": "anna", "method": "cti", "capacity": 1, "on": "2016-01-02"}
    )
    post(intake, f"/programmes/{cph}/workers", {"worker_id": "bo", "method": "cti", "on": "2016-01-02"})
    return cph


def test_a_complete_course(intake: FlaskClient, workers: str, connection: redis.Redis, store: EventStore) -> None:
    case = referral(intake, referred_on="2016-01-15")
    post(intake, f"/referrals/{case}/assessment", {"on": "2016-01-20"})
    status = post(
        intake, f"/cases/{case}/enrolment", {"on": "2016-02-01", "scores": {"housing": 2, "mental_health": 4}}
    )
    assert status["status"] == "enrolled" and status["status_da"] == "indskrevet"
    assert status["enrolled_on"] == "2016-02-01" and status["method"] == "cti"
    assert status["course"] == {
        "planned_end": "2016-12-31",
        "full_end": "2017-02-01",
        "truncated": True,
        "planned_months": 12,
        "actual_months": 11.0,
        "closure_overdue": True,  # recorded years later, and not yet closed
    }
    assert status["phase"] == "phase_1" and status["phase_da"].startswith("fase 1")
    assert status["next_phase"] == {"phase": "phase_2", "on": "2016-06-01"}
    assert post(intake, f"/cases/{case}/assignment", {"on": "2016-02-01", "worker_id": "anna"})["worker_id"] == "anna"
    star = post(intake, f"/cases/{case}/stars", {"on": "2016-04-01", "scores": {"housing": 5, "mental_health": 5}})
    assert star["next_assessment_due"] == "2016-06-01"
    who5 = post(intake, f"/cases/{case}/who5", {"on": "2016-04-01", "items": [3, 2, 3, 2, 3]})["who5"][0]
    assert (who5["raw"], who5["percentage"]) == (13, 52)
    post(intake, f"/cases/{case}/purposes", {"on": "2016-04-01", "purpose": "exit_prostitution"})
    goal = post(intake, f"/cases/{case}/goals", {"on": "2016-02-02", "life_area": "housing", "description": "own flat"})
    goal_id = goal["goals"][0]["goal_id"]
    post(intake, f"/cases/{case}/goals/{goal_id}/update", {"on": "2016-03-01", "description": "own flat in Valby"})
    post(intake, f"/cases/{case}/contacts", {"on": "2016-02-03", "kind": "community_meeting"})
    post(intake, f"/cases/{case}/housing", {"on": "2016-05-01", "situation": "permanent"})
    post(intake, f"/cases/{case}/addiction-treatment", {"on": "2016-05-02", "in_treatment": True})
    post(intake, f"/cases/{case}/job-centre-category", {"on": "2016-05-03", "category": "education_ready"})
    achieved = post(intake, f"/cases/{case}/goals/{goal_id}/achieve", {"on": "2016-05-01"})
    assert achieved["goals"][0]["status"] == "achieved"
    moved = post(intake, f"/cases/{case}/phase", {"on": "2016-05-15", "phase": "phase_2", "reason": "housed early"})
    assert [p["phase"] for p in moved["phases"]] == ["phase_1", "phase_2"]
    assert moved["next_phase"] == {"phase": "phase_3", "on": "2016-09-15"}
    refused(
        intake,
        f"/cases/{case}/phase",
        {"on": "2016-05-14", "phase": "phase_3", "reason": "x"},
        409,
        "date_before_last_phase",
    )
    past = intake.get(f"/cases/{case}?on=2016-05-14", headers=STAFF).get_json()["as_of"]
    assert past == {"on": "2016-05-14", "status": "enrolled", "phase": "phase_1"}
    assert intake.get(f"/cases/{case}?on=2016-01-16", headers=STAFF).get_json()["as_of"]["status"] == "referred"
    assert intake.get(f"/cases/{case}?on=someday", headers=STAFF).status_code == 422
    closed = post(intake, f"/cases/{case}/closure", {"on": "2016-12-31", "reason": "funding_ended"})
    assert closed["status"] == "closed" and closed["closed_on"] == "2016-12-31" and closed["worker_id"] is None
    assert closed["assignments"] == [
        {"worker_id": "anna", "from": "2016-02-01", "until": "2016-12-31", "via": "request"}
    ]

    run_workers(connection, "caseflow")
    caseload = intake.get(f"/programmes/{workers}/caseload", headers=STAFF).get_json()
    assert [w["load"] for w in caseload["workers"]] == [0, 0]  # closing freed anna's slot
    [listed] = intake.get(f"/programmes/{workers}/cases", headers=STAFF).get_json()["cases"]
    assert (listed["status"], listed["phase"], listed["version"]) == ("closed", "phase_2", store.stream_version(case))


def test_referral_stage_outcomes_are_visible_and_final(intake: FlaskClient, cph: str) -> None:
    declined = referral(intake)
    assert post(intake, f"/referrals/{declined}/decline", {"reason": "outside target group"})["status_da"] == "afvist"
    onward = in_assessment(intake)
    assert post(intake, f"/referrals/{onward}/refer-on", {"to": "psykiatrien"})["outcome_reason"] == "psykiatrien"
    withdrawn = referral(intake)
    assert post(intake, f"/referrals/{withdrawn}/withdraw", {"reason": "citizen declined"})["status"] == "withdrawn"
    for case in (declined, onward, withdrawn):
        refused(intake, f"/referrals/{case}/assessment", {}, 409, "case_closed")


def test_lifecycle_refusals(intake: FlaskClient, workers: str) -> None:
    fresh = referral(intake)
    star = {"on": "2016-02-01", "scores": {"housing": 3}}
    refused(intake, f"/cases/{fresh}/enrolment", star, 409, "not_in_assessment")
    refused(intake, f"/cases/{fresh}/who5", {"items": [1, 1, 1, 1, 1]}, 409, "not_enrolled")
    refused(intake, f"/cases/{fresh}/closure", {"reason": "completed"}, 409, "not_enrolled")
    refused(intake, f"/cases/{fresh}/assignment", {"worker_id": "anna"}, 409, "not_in_assessment")
    no_consent = in_assessment(intake, consent={"given": False})
    refused(intake, f"/cases/{no_consent}/enrolment", star, 409, "no_consent")
    late = in_assessment(intake)
    error = refused(intake, f"/cases/{late}/enrolment", {**star, "on": "2016-04-01"}, 409, "outside_recruitment_window")
    assert "2016-01-01 to 2016-03-31" in error["message"]

    case = enrolled(intake)
    refused(intake, f"/cases/{case}/enrolment", star, 409, "already_enrolled")
    refused(intake, f"/cases/{case}/stars", {**star, "on": "2016-01-31"}, 409, "date_before_enrolment")
    refused(intake, f"/cases/{case}/phase", {"phase": "phase_1", "reason": "x"}, 409, "same_phase")
    refused(intake, f"/cases/{case}/goals/goal-9/achieve", {}, 409, "unknown_goal")
    goal = {"on": "2016-02-02", "life_area": "network", "description": "see my sister", "goal_id": "sister"}
    post(intake, f"/cases/{case}/goals", goal)
    error = refused(intake, f"/cases/{case}/goals/sister/update", {}, 422, "validation_failed")
    assert set(error["fields"]) == {"description"}
    post(
        intake, f"/cases/{case}/goals", {**goal, "life_area": "finances", "description": "budget", "goal_id": "budget"}
    )
    refused(
        intake,
        f"/cases/{case}/goals",
        {"life_area": "finances", "description": "x", "goal_id": "budget"},
        409,
        "goal_exists",
    )
    post(intake, f"/cases/{case}/goals/budget/drop", {"on": "2016-02-03"})
    refused(intake, f"/cases/{case}/goals/budget/achieve", {}, 409, "goal_closed")
    refused(intake, f"/referrals/{case}/refer-on", {"to": "x"}, 409, "not_referred")
    refused(intake, f"/cases/{case}/reopen", {"consent": {"given": True}}, 409, "not_closed")

    post(intake, f"/cases/{case}/closure", {"on": "2016-06-01", "reason": "dropped_out"})
    refused(intake, f"/cases/{case}/stars", {**star, "on": "2016-07-01"}, 409, "case_closed")
    refused(intake, f"/cases/{case}/closure", {"reason": "completed"}, 409, "case_closed")
    refused(intake, f"/cases/{case}/assignment", {"worker_id": "anna"}, 409, "case_closed")
    refused(
        intake,
        f"/cases/{case}/reopen",
        {"on": "2016-05-31", "consent": {"given": True}},
        409,
        "date_before_last_change",
    )
    reopened = post(intake, f"/cases/{case}/reopen", {"on": "2016-07-01", "consent": {"given": True}})
    assert reopened["reopened_from"] == case and reopened["status"] == "referred"
    refused(intake, f"/cases/{case}/reopen", {"consent": {"given": True}}, 409, "already_reopened")
    # The reopened course's source is the coordinator's organisation, which also refers: that makes it no referral
    # of the municipality's referrers, who may neither read it nor withdraw it.
    new = reopened["case_id"]
    assert intake.get(f"/referrals/{new}", headers=auth("kk-referrer")).status_code == 404
    withdrawal = intake.post(f"/referrals/{new}/withdraw", json={"reason": "x"}, headers=auth("kk-referrer"))
    assert withdrawal.status_code == 404


def test_invalid_measures_are_422_with_the_field_named(intake: FlaskClient, workers: str) -> None:
    case = enrolled(intake)
    cases: dict[str, tuple[dict[str, Any], set[str]]] = {
        "stars": ({"scores": {"housing": 11, "offending": 2}}, {"scores.housing", "scores.offending"}),
        "who5": ({"items": [1, 2, 3, 4]}, {"items"}),
        "purposes": ({"purpose": "get_rich"}, {"purpose"}),
        "goals": ({"life_area": "astrology", "description": "x"}, {"life_area"}),
        "contacts": ({"kind": "telepathy"}, {"kind"}),
        "housing": ({"situation": "castle"}, {"situation"}),
        "phase": ({"phase": "phase_9", "reason": "x"}, {"phase"}),
        "closure": ({"reason": "bored"}, {"reason"}),
    }
    for path, (body, fields) in cases.items():
        error = refused(intake, f"/cases/{case}/{path}", body, 422, "validation_failed")
        assert set(error["fields"]) == fields, path
    error = refused(intake, f"/cases/{case}/who5", {"items": [1, 2, 3, 4, 6]}, 422, "validation_failed")
    assert "4" in error["fields"]["items"]
    unknown = intake.post("/referrals", json=referral_body(programme_id="no-such-programme"), headers=PARTNER)
    assert unknown.status_code == 422 and unknown.get_json()["error"]["fields"] == {
        "programme_id": ["no such programme"]
    }


def test_caseload_refusals_and_the_waitlist(intake: FlaskClient, workers: str, connection: redis.Redis) -> None:
    first, second, third = enrolled(intake), enrolled(intake), enrolled(intake)
    post(intake, f"/cases/{first}/assignment", {"worker_id": "anna", "on": "2016-02-10"})
    refused(intake, f"/cases/{first}/assignment", {"worker_id": "anna"}, 409, "already_assigned")
    error = refused(intake, f"/cases/{second}/assignment", {"worker_id": "anna"}, 409, "worker_at_capacity")
    assert "1 of 1" in error["message"]
    refused(intake, f"/cases/{second}/assignment", {"worker_id": "zed"}, 422, "validation_failed")
    waiting = post(
        intake, f"/cases/{second}/assignment", {"worker_id": "anna", "waitlist_if_full": True, "on": "2016-02-10"}
    )
    assert waiting["worker_id"] is None and waiting["waitlisted_since"]
    refused(
        intake,
        f"/cases/{second}/assignment",
        {"worker_id": "anna", "waitlist_if_full": True},
        409,
        "already_waitlisted",
    )
    # Reassigning keeps history and frees anna's slot, which a caseflow worker offers to the waitlist (today: so
    # only while the programme is funded, and this one is extended past today).
    post(intake, f"/programmes/{workers}/changes", {"funding_end": (today() + timedelta(days=365)).isoformat()})
    post(intake, f"/cases/{first}/assignment", {"worker_id": "bo", "on": "2016-02-15"})
    run_workers(connection, "caseflow")
    caseload = intake.get(f"/programmes/{workers}/caseload", headers=STAFF).get_json()
    assert {w["worker_id"]: w["cases"] for w in caseload["workers"]} == {"anna": [second], "bo": [first]}
    assert caseload["waitlist"] == []
    post(intake, f"/cases/{third}/assignment", {"worker_id": "bo", "on": "2016-02-15"})
    assert intake.get(f"/cases/{third}", headers=STAFF).get_json()["worker_id"] == "bo"
    history = intake.get(f"/cases/{first}", headers=STAFF).get_json()["assignments"]
    assert [(h["worker_id"], h["until"] is None) for h in history] == [("anna", False), ("bo", True)]
    offered = intake.get(f"/cases/{second}", headers=STAFF).get_json()["assignments"]
    assert [(h["worker_id"], h["via"]) for h in offered] == [("anna", "waitlist")]


def test_a_waitlisted_case_is_not_assigned_or_released_on_a_date_before_it_began_waiting(
    intake: FlaskClient, workers: str
) -> None:
    """Otherwise the waitlist would count below zero on the dates between, and the wait would be negative."""
    first, second = enrolled(intake), enrolled(intake)
    post(intake, f"/cases/{first}/assignment", {"worker_id": "anna", "on": "2016-03-01"})
    post(intake, f"/cases/{second}/assignment", {"worker_id": "anna", "waitlist_if_full": True, "on": "2016-03-10"})
    before = intake.get(f"/programmes/{workers}/caseload", headers=STAFF).get_json()
    body = {"worker_id": "bo", "on": "2016-03-05"}
    error = refused(intake, f"/cases/{second}/assignment", body, 409, "date_before_last_record")
    assert "2016-03-10" in error["message"]
    refused(intake, f"/cases/{second}/closure", {"on": "2016-03-05", "reason": "moved"}, 409, "date_before_last_record")
    assert intake.get(f"/programmes/{workers}/caseload", headers=STAFF).get_json() == before  # nothing written
    assert intake.get(f"/cases/{second}", headers=STAFF).get_json()["status"] == "enrolled"
    post(intake, f"/cases/{second}/assignment", {"worker_id": "bo", "on": "2016-03-10"})  # the same day will do


def test_no_course_runs_past_the_funding_end(intake: FlaskClient, workers: str, store: EventStore) -> None:
    """DOMAIN.md: funding ends on 2016-12-31 "and no course may run past it". Records dated after it were
    accepted, and a course not closed stayed enrolled past it with nothing to show it was due for closure."""
    case = enrolled(intake)
    post(intake, f"/cases/{case}/stars", {"on": "2016-12-01", "scores": {"housing": 4}})  # next due 2017-02-01
    post(intake, f"/cases/{case}/contacts", {"on": "2016-12-31", "kind": "phone"})  # its last day
    after = "2017-01-02"
    head = store.head()
    for path, body in (
        ("stars", {"scores": {"housing": 4}}),
        ("who5", {"items": [3, 3, 3, 3, 3]}),
        ("contacts", {"kind": "phone"}),
        ("goals", {"life_area": "network", "description": "see my sister"}),
        ("phase", {"phase": "phase_2", "reason": "housed"}),
        ("assignment", {"worker_id": "bo"}),
        ("closure", {"reason": "funding_ended"}),
    ):
        error = refused(intake, f"/cases/{case}/{path}", {**body, "on": after}, 409, "after_funding_end")
        assert "2016-12-31" in error["message"]
    assert store.head() == head  # nothing written
    view = intake.get(f"/cases/{case}", headers=STAFF).get_json()
    assert view["status"] == "enrolled" and view["course"]["closure_overdue"]  # today is past 2016-12-31
    assert view["next_assessment_due"] is None and not view["assessment_overdue"]  # no star can be recorded
    # A referral not enrolled is no course: its outcome is still recorded.
    post(intake, f"/referrals/{in_assessment(intake)}/decline", {"on": after, "reason": "no place"})
    # A funding extension moves every course's last day.
    post(intake, f"/programmes/{workers}/changes", {"funding_end": "2017-06-30"})
    post(intake, f"/cases/{case}/contacts", {"on": after, "kind": "phone"})
    closed = post(intake, f"/cases/{case}/closure", {"on": "2017-06-30", "reason": "funding_ended"})
    assert closed["status"] == "closed" and not closed["course"]["closure_overdue"]
    refused(intake, f"/cases/{case}/closure", {"on": "2017-07-01", "reason": "completed"}, 409, "case_closed")


def test_no_course_is_left_without_a_date_it_can_be_closed_on(
    intake: FlaskClient, workers: str, connection: redis.Redis
) -> None:
    """Two ways the funding-end rule left a course open for good (found by a review): a waitlist offer dated
    today, after the funding end, which its closure could be dated neither before nor after; and a funding end
    moved back before a worker's own phase move, which its closure could not be dated before."""
    first, second = enrolled(intake), enrolled(intake)
    post(intake, f"/cases/{first}/assignment", {"worker_id": "anna", "on": "2016-02-10"})
    post(intake, f"/cases/{second}/assignment", {"worker_id": "anna", "waitlist_if_full": True, "on": "2016-02-10"})
    post(intake, f"/cases/{first}/closure", {"on": "2016-12-20", "reason": "completed"})  # recorded years later
    run_workers(connection, "caseflow")
    waiting = intake.get(f"/cases/{second}", headers=STAFF).get_json()
    assert waiting["worker_id"] is None and waiting["waitlisted_since"] == "2016-02-10"  # no offer after the end
    post(intake, f"/cases/{second}/closure", {"on": "2016-12-31", "reason": "funding_ended"})

    case = enrolled(intake)
    post(intake, f"/cases/{case}/phase", {"on": "2016-09-01", "phase": "phase_2", "reason": "housed"})
    post(intake, f"/cases/{case}/contacts", {"on": "2016-10-01", "kind": "phone"})
    post(intake, f"/programmes/{workers}/changes", {"funding_end": "2016-06-30"})  # a cut
    refused(intake, f"/cases/{case}/contacts", {"on": "2016-10-02", "kind": "phone"}, 409, "after_funding_end")
    refused(intake, f"/cases/{case}/closure", {"on": "2016-10-01", "reason": "funding_ended"}, 409, "after_funding_end")
    closed = post(intake, f"/cases/{case}/closure", {"on": "2016-09-01", "reason": "funding_ended"})
    assert closed["status"] == "closed" and closed["closed_on"] == "2016-09-01"


def test_programme_refusals(intake: FlaskClient, workers: str) -> None:
    refused(intake, "/programmes", COPENHAGEN, 409, "programme_exists")
    refused(intake, f"/programmes/{workers}/workers", {"worker_id": "anna", "method": "cti"}, 409, "worker_exists")
    refused(intake, f"/programmes/{workers}/workers", {"worker_id": "cy", "method": "icm"}, 422, "validation_failed")
    refused(intake, f"/programmes/{workers}/workers/zed/capacity", {"capacity": 3}, 409, "unknown_worker")
    above_limit = refused(
        intake, f"/programmes/{workers}/workers/bo/capacity", {"capacity": 11}, 422, "validation_failed"
    )
    assert list(above_limit["fields"]) == ["capacity"]  # the programme's caseload limit is 10 per worker
    case = enrolled(intake)
    post(intake, f"/cases/{case}/assignment", {"worker_id": "bo", "on": "2016-02-10"})
    post(intake, f"/cases/{enrolled(intake)}/assignment", {"worker_id": "bo", "on": "2016-02-10"})
    refused(intake, f"/programmes/{workers}/workers/bo/capacity", {"capacity": 1}, 409, "capacity_below_caseload")
    refused(intake, f"/programmes/{workers}/changes", {"caseload_limit": 1}, 409, "capacity_below_caseload")
    refused(intake, f"/programmes/{workers}/changes", {}, 422, "validation_failed")
    bad = {**COPENHAGEN, "programme_id": "other", "recruitment_end": "2015-12-31", "phases": [], "methods": ["x"]}
    error = refused(intake, "/programmes", bad, 422, "validation_failed")
    assert {"phases", "methods"} <= set(error["fields"])
    extended = post(intake, f"/programmes/{workers}/changes", {"funding_end": "2017-06-30"})
    assert extended["funding_end"] == "2017-06-30"
    status = intake.get(f"/cases/{case}", headers=STAFF).get_json()
    assert status["course"]["planned_end"] == "2017-02-01" and not status["course"]["truncated"]


def test_a_funding_end_before_the_end_of_recruitment_is_refused_and_writes_nothing(
    intake: FlaskClient, cph: str, store: EventStore
) -> None:
    """A course enrolled on the window's last day would end before it began: such a programme answered 500 on
    every later command of that course (after writing it), and reporting's fidelity and export with it."""
    bad = {**COPENHAGEN, "programme_id": "short", "funding_end": "2016-03-30"}
    assert refused(intake, "/programmes", bad, 422, "validation_failed")["fields"] == {
        "funding_end": ["must not be before recruitment_end"]
    }
    head = store.head()
    error = refused(intake, f"/programmes/{cph}/changes", {"funding_end": "2016-02-01"}, 422, "validation_failed")
    assert error["fields"] == {"funding_end": ["must not be before recruitment_end"]}
    refused(intake, f"/programmes/{cph}/changes", {"recruitment_end": "2017-01-31"}, 422, "validation_failed")
    assert store.head() == head
    case = enrolled(intake, "2016-03-31")
    assert intake.get(f"/cases/{case}", headers=STAFF).get_json()["course"]["planned_end"] == "2016-12-31"


def test_a_goal_without_an_id_takes_the_first_free_number(intake: FlaskClient, cph: str) -> None:
    """A goal given "goal-2" as its own id made every later goal without one 409 goal_exists, for good."""
    case = enrolled(intake)
    goal = {"on": "2016-02-02", "life_area": "housing", "description": "own flat"}
    post(intake, f"/cases/{case}/goals", {**goal, "goal_id": "goal-2"})
    post(intake, f"/cases/{case}/goals", goal)
    answer = post(intake, f"/cases/{case}/goals", goal)
    assert [g["goal_id"] for g in answer["goals"]] == ["goal-2", "goal-3", "goal-4"]


def test_a_case_changes_relation_worker_in_date_order(intake: FlaskClient, workers: str, store: EventStore) -> None:
    """A closure or reassignment dated before the case's last assignment counted the worker's caseload below
    zero on the dates between (caseloads on 7 Feb: anna -1)."""
    case = enrolled(intake, "2016-02-01")
    post(intake, f"/cases/{case}/assignment", {"on": "2016-02-10", "worker_id": "anna"})
    head = store.head()
    refused(
        intake, f"/cases/{case}/assignment", {"on": "2016-02-09", "worker_id": "bo"}, 409, "date_before_last_record"
    )
    refused(
        intake, f"/cases/{case}/closure", {"on": "2016-02-05", "reason": "completed"}, 409, "date_before_last_record"
    )
    assert store.head() == head
    post(intake, f"/cases/{case}/assignment", {"on": "2016-02-10", "worker_id": "bo"})  # the same day is fine
    post(intake, f"/cases/{case}/closure", {"on": "2016-03-01", "reason": "completed"})


def test_a_course_works_only_with_a_worker_of_its_method(
    intake: FlaskClient, cti_and_icm: str, connection: redis.Redis
) -> None:
    assigned = in_assessment(intake)
    post(intake, f"/cases/{assigned}/assignment", {"worker_id": "frej", "on": "2016-01-25"})
    body = {"on": "2016-02-01", "scores": {"housing": 3}}
    refused(intake, f"/cases/{assigned}/enrolment", body | {"method": "cti"}, 409, "method_mismatch")
    assert post(intake, f"/cases/{assigned}/enrolment", body)["method"] == "icm"  # frej's method
    cti = enrolled(intake)
    post(intake, f"/cases/{cti}/assignment", {"worker_id": "anna", "on": "2016-02-10"})
    waiting = in_assessment(intake)
    post(intake, f"/cases/{waiting}/enrolment", body | {"method": "icm"})
    refused(intake, f"/cases/{waiting}/assignment", {"worker_id": "anna", "on": "2016-02-10"}, 409, "method_mismatch")
    post(intake, f"/cases/{waiting}/assignment", {"worker_id": "frej", "waitlist_if_full": True, "on": "2016-02-10"})
    # Anna's slot frees (caseflow offers slots today: the programme is funded past it): the ICM course waits on,
    # for frej's.
    post(intake, f"/programmes/{cti_and_icm}/changes", {"funding_end": (today() + timedelta(days=365)).isoformat()})
    post(intake, f"/cases/{cti}/closure", {"on": "2016-03-01", "reason": "moved"})
    run_workers(connection, "caseflow")
    still = intake.get(f"/cases/{waiting}", headers=STAFF).get_json()
    assert (still["worker_id"], still["waitlisted_since"]) == (None, "2016-02-10")
    post(intake, f"/cases/{assigned}/closure", {"on": "2016-03-02", "reason": "moved"})
    run_workers(connection, "caseflow")
    assert intake.get(f"/cases/{waiting}", headers=STAFF).get_json()["worker_id"] == "frej"


def test_an_assignment_landing_while_a_star_enrols_the_case_is_seen_by_the_enrolment(
    intake: FlaskClient, cti_and_icm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The enrolment read the case unassigned (any method would do); before its append, the coordinator assigned
    it to frej, who works with ICM. The enrolment read-checks the caseload, so it is decided again, on frej."""
    case = in_assessment(intake)
    assigned: list[str] = []

    def read_then_assign(caseload: Caseload, programme: Programme, case_id: str) -> str | None:
        method = assigned_method(caseload, programme, case_id)
        if not assigned:
            assigned.append(case_id)
            post(intake, f"/cases/{case_id}/assignment", {"worker_id": "frej", "on": "2016-01-25"})
        return method

    monkeypatch.setattr(courses, "assigned_method", read_then_assign)
    enrolment = post(intake, f"/cases/{case}/enrolment", {"on": "2016-02-01", "scores": {"housing": 3}})
    assert assigned == [case] and (enrolment["method"], enrolment["worker_id"]) == ("icm", "frej")


def test_a_star_on_an_enrolled_course_does_not_contend_with_assignments_elsewhere_in_the_programme(
    intake: FlaskClient, cti_and_icm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the star that enrols takes anything from the caseload. Any other is not refused (after its retries)
    because the coordinator assigned other citizens in the programme while it was being decided."""
    course = enrolled(intake)
    others = [in_assessment(intake) for _ in range(5)]

    def meanwhile(caseload: Caseload, programme: Programme, case_id: str) -> str | None:
        if others:  # another citizen is assigned between this star's read and its append
            body = {"worker_id": "frej", "on": "2016-01-25", "waitlist_if_full": True}
            post(intake, f"/cases/{others.pop()}/assignment", body)
        return assigned_method(caseload, programme, case_id)

    monkeypatch.setattr(courses, "assigned_method", meanwhile)
    post(intake, f"/cases/{course}/stars", {"on": "2016-04-01", "scores": {"housing": 4}})
    assert len(others) == 4  # decided once: the assignment that landed meanwhile did not make it lose


def test_an_assignment_landing_while_the_course_closes_is_released_by_the_closure(
    intake: FlaskClient, cti_and_icm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The closure read the case with no worker (nothing to release); before its append, the coordinator assigned
    it to anna. The closure read-checks the caseload even with nothing to release, so it is decided again and
    frees anna's slot: a closed course never holds one."""
    case = enrolled(intake)
    assigned: list[str] = []

    def read_then_assign(caseload: Caseload, case_id: str) -> date | None:
        if not assigned:
            assigned.append(case_id)
            post(intake, f"/cases/{case_id}/assignment", {"worker_id": "anna", "on": "2016-02-10"})
        return last_assignment_change(caseload, case_id)

    monkeypatch.setattr(service, "last_assignment_change", read_then_assign)
    post(intake, f"/cases/{case}/closure", {"on": "2016-03-01", "reason": "moved"})
    caseload = intake.get(f"/programmes/{cti_and_icm}/caseload", headers=STAFF).get_json()
    assert assigned == [case] and {w["worker_id"]: w["cases"] for w in caseload["workers"]}["anna"] == []
