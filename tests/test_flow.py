"""The walking skeleton end to end: intake -> log -> real RQ workers -> caseflow and reporting."""

from __future__ import annotations

import pytest
import redis
from flask.testing import FlaskClient

from shared.nudges import queue_health
from tests.conftest import PARTNER, STAFF, referral_body
from tests.support import auth, run_workers


def test_a_referral_flows_to_caseflow_and_reporting(
    intake: FlaskClient, reporting: FlaskClient, connection: redis.Redis, cph: str
) -> None:
    empty = reporting.get("/programmes/demo-cph/referrals-per-partner", headers=STAFF).get_json()
    assert empty["partners"] == [] and empty["total"]["referrals"] == 0

    ids = [intake.post("/referrals", json=referral_body(), headers=PARTNER).get_json()["case_id"] for _ in range(2)]
    intake.post("/referrals", json=referral_body(), headers=auth("livarehab"))
    intake.post(f"/referrals/{ids[0]}/decline", json={"reason": "no consent to course"}, headers=STAFF)

    stale = reporting.get("/programmes/demo-cph/referrals-per-partner", headers=STAFF).get_json()
    assert stale["caught_up"] is False and stale["total"]["referrals"] == 0  # nothing runs until a worker does

    run_workers(connection)

    report = reporting.get("/programmes/demo-cph/referrals-per-partner", headers=STAFF).get_json()
    assert report["caught_up"] is True
    none = {"accepted": 0, "withdrawn": 0, "referred_on": 0, "enrolled": 0, "average_days_to_enrolment": None}
    assert report["partners"] == [
        {"partner": "livarehab", "referrals": 1, "pending": 1, "declined": 0, **none},
        {"partner": "reden", "referrals": 2, "pending": 1, "declined": 1, **none},
    ]
    assert report["total"]["referrals"] == 3
    own = reporting.get("/programmes/demo-cph/referrals-per-partner", headers=PARTNER).get_json()
    assert [row["partner"] for row in own["partners"]] == ["reden"] and own["total"]["referrals"] == 2
    # A referring partner learns its referrals' outcomes, not the courses that followed (nor when they began).
    for row in (*own["partners"], own["total"]):
        assert not {"enrolled", "average_days_to_enrolment"} & set(row) and {"accepted", "declined"} <= set(row)

    cases = intake.get("/programmes/demo-cph/cases", headers=STAFF).get_json()["cases"]
    assert sorted(c["status"] for c in cases) == ["declined", "referred", "referred"]


def test_health_and_readiness_report_durability(intake: FlaskClient, reporting: FlaskClient) -> None:
    for client in (intake, reporting):
        assert client.get("/healthz").get_json() == {"status": "ok"}
        ready = client.get("/readyz").get_json()
        assert ready["status"] == "ready"
        assert ready["durable"] is False  # neither test server runs with AOF


def test_a_referrals_answer_is_the_case_as_read_back(intake: FlaskClient, cph: str) -> None:
    """The answer to a new referral is exactly what reading the case gives, and a replayed request answers
    with the case as it is now."""
    headers = STAFF | {"Idempotency-Key": "answer-1"}
    created = intake.post("/referrals", json=referral_body(), headers=headers)
    answer = created.get_json()
    assert created.status_code == 201 and answer.pop("positions")
    assert answer == intake.get(f"/cases/{answer['case_id']}", headers=STAFF).get_json()
    moved = intake.post(f"/referrals/{answer['case_id']}/assessment", json={"on": "2016-01-20"}, headers=STAFF)
    assert moved.status_code == 201
    replayed = intake.post("/referrals", json=referral_body(), headers=headers)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.get_json()["status"] == "in_assessment"


def test_two_suites_on_one_redis_each_run_their_own_jobs(
    intake: FlaskClient, reporting: FlaskClient, connection: redis.Redis, cph: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``CASEFLOW_KEY_PREFIX`` separates suites on one Redis (a training copy beside production, say): their
    workers must not take each other's nudges, or one suite's read models wait for the sweep."""
    intake.post("/referrals", json=referral_body(), headers=PARTNER)
    ours = queue_health(connection, "cf")
    assert [counts["queued"] >= 1 for counts in ours.values()] == [True, True]  # caseflow's and reporting's

    monkeypatch.setenv("CASEFLOW_KEY_PREFIX", "training")  # the other suite's workers, on its own (empty) log
    run_workers(connection)
    assert queue_health(connection, "cf") == ours, "the other suite's workers left our jobs alone"
    monkeypatch.delenv("CASEFLOW_KEY_PREFIX")

    run_workers(connection)
    report = reporting.get("/programmes/demo-cph/referrals-per-partner", headers=STAFF).get_json()
    assert report["caught_up"] is True and report["total"]["referrals"] == 1
    assert all(counts["queued"] == 0 for counts in queue_health(connection, "cf").values())
