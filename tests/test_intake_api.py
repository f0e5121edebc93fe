"""Intake over HTTP, through the real Flask app (fakeredis and real Redis)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from shared.eventstore import EventStore
from tests.conftest import PARTNER, STAFF, referral_body
from tests.support import auth


def post(client: FlaskClient, path: str, body: Any, **headers: str) -> Any:
    return client.post(path, json=body, headers={**PARTNER, **headers})


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    error: dict[str, Any] = response.get_json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


def test_a_referral_is_accepted_and_readable(intake: FlaskClient, cph: str, store: EventStore) -> None:
    response = post(intake, "/referrals", referral_body())
    assert response.status_code == 201
    body = response.get_json()
    # The referring partner sees its referral's outcome, and nothing of a course.
    assert body == {
        "case_id": body["case_id"],
        "programme_id": "demo-cph",
        "referred_on": "2016-01-15",
        "outcome": "pending",
        "reason": None,
        "positions": body["positions"],
    }
    assert response.headers["Location"] == f"/referrals/{body['case_id']}"
    assert intake.get(response.headers["Location"], headers=PARTNER).get_json()["outcome"] == "pending"
    staff_view = intake.get(f"/cases/{body['case_id']}", headers=STAFF).get_json()
    assert staff_view["status"] == "referred" and staff_view["status_da"] == "henvendelse"
    assert staff_view["source"] == "reden"
    [event] = store.read_stream(body["case_id"])
    assert event.event_type == "ReferralReceived" and event.actor.startswith("reden:")
    assert event.metadata["request_id"] == response.headers["X-Request-Id"]


def test_invalid_fields_get_422_with_every_field_named(intake: FlaskClient, cph: str, store: EventStore) -> None:
    head = store.head()
    future = (date.today() + timedelta(days=2)).isoformat()
    body = referral_body(programme_id="Not A Slug", referred_on=future, consent={}, citizen={"cpr": "320190-1234"})
    error = assert_error(post(intake, "/referrals", body), 422, "validation_failed")
    assert set(error["fields"]) == {"programme_id", "referred_on", "consent", "citizen"}
    assert error["fields"]["consent"] == {"given": ["Missing data for required field."]}
    assert "320190" not in str(error)  # the CPR number is never echoed
    for citizen in ({"cpr": "010110-4001"}, {"birth_date": "2010-01-01"}):  # a referral before the citizen was born
        error = assert_error(
            post(intake, "/referrals", referral_body(referred_on="2005-03-01", citizen=citizen)),
            422,
            "validation_failed",
        )
        assert error["fields"] == {"referred_on": ["is before the citizen's birth date"]}
    assert store.head() == head  # nothing half-written


def test_malformed_requests_get_clear_4xx(intake: FlaskClient, cph: str, store: EventStore) -> None:
    head = store.head()
    assert_error(
        intake.post("/referrals", data="{", headers={**PARTNER, "Content-Type": "application/json"}),
        400,
        "malformed_json",
    )
    assert_error(
        intake.post("/referrals", data="x", headers={**PARTNER, "Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    assert_error(post(intake, "/referrals", ["a list"]), 400, "malformed_json")
    not_strict = '{"programme_id": NaN}'  # Python's json reads NaN; JSON has no such value
    assert_error(
        intake.post("/referrals", data=not_strict, headers={**PARTNER, "Content-Type": "application/json"}),
        400,
        "malformed_json",
    )
    assert_error(intake.post("/referrals", json=referral_body()), 401, "unauthenticated")
    assert_error(
        intake.post("/referrals", json=referral_body(), headers={"X-Partner": "reden"}), 401, "unauthenticated"
    )
    assert_error(
        intake.post("/referrals", json=referral_body(), headers={"Authorization": "Bearer cfk.reden.00"}),
        401,
        "unauthenticated",
    )
    assert_error(
        intake.post("/referrals", data=b"x" * 70_000, headers={**PARTNER, "Content-Type": "application/json"}),
        413,
        "request_entity_too_large",
    )
    assert_error(intake.get("/nowhere"), 404, "not_found")
    assert_error(intake.put("/referrals", json={}), 405, "method_not_allowed")
    assert_error(intake.get("/referrals/case-" + "0" * 32, headers=PARTNER), 404, "not_found")
    assert_error(intake.get("/referrals/../../etc", headers=PARTNER), 404, "not_found")
    assert store.head() == head


def test_a_referring_partner_is_told_no_more_of_a_refusal_than_its_referrals_outcome(
    intake: FlaskClient, cph: str
) -> None:
    """Staff are told why (the case is enrolled, or was assessed on a later date); to a referring partner those
    are the course's state and the date of its assessment, which it may not know."""
    case = post(intake, "/referrals", referral_body()).get_json()["case_id"]
    assert post(intake, f"/referrals/{case}/assessment", {"on": "2016-01-27"}, **STAFF).status_code == 201
    early = {"reason": "found housing elsewhere", "on": "2016-01-20"}
    staff = assert_error(post(intake, f"/referrals/{case}/withdraw", early, **STAFF), 409, "date_before_last_change")
    assert "2016-01-27" in staff["message"]
    partner = assert_error(post(intake, f"/referrals/{case}/withdraw", early), 409, "not_possible_now")
    assert "2016-01-27" not in partner["message"] and "assess" not in partner["message"]
    enrol = {"on": "2016-02-01", "scores": {"housing": 3}}
    assert post(intake, f"/cases/{case}/enrolment", enrol, **STAFF).status_code == 201
    later = assert_error(post(intake, f"/referrals/{case}/withdraw", {"reason": "x"}), 409, "not_possible_now")
    assert "enrolled" not in later["message"]
    assert intake.get(f"/referrals/{case}", headers=PARTNER).get_json()["outcome"] == "accepted"


def test_an_idempotency_key_belongs_to_the_key_that_sent_it(intake: FlaskClient, cph: str) -> None:
    """A replay answers with the first request's answer (the course, the alias in clear), so another key of the
    same partner, here a worker's that may not read the coordinator's case, must not get it by reusing the key."""
    body = referral_body(citizen={"alias": "Maja Hansen"})
    first = post(intake, "/referrals", body, **STAFF, **{"Idempotency-Key": "kk-2016-0001"})
    case_id = first.get_json()["case_id"]
    assert intake.get(f"/cases/{case_id}", headers=auth("anna")).status_code == 404
    other = post(intake, "/referrals", body, **auth("anna"), **{"Idempotency-Key": "kk-2016-0001"})
    assert other.status_code == 201 and "Idempotent-Replayed" not in other.headers
    assert other.get_json()["case_id"] != case_id
    again = post(intake, "/referrals", body, **STAFF, **{"Idempotency-Key": "kk-2016-0001"})
    assert again.headers["Idempotent-Replayed"] == "true" and again.get_json()["case_id"] == case_id


def test_a_retried_post_with_the_same_idempotency_key_is_one_referral(
    intake: FlaskClient, cph: str, store: EventStore
) -> None:
    head = store.head()
    first = post(intake, "/referrals", referral_body(), **{"Idempotency-Key": "reden-2016-0001"})
    again = post(intake, "/referrals", referral_body(), **{"Idempotency-Key": "reden-2016-0001"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.get_json()["case_id"] == first.get_json()["case_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert store.head() == head + 1
    reused = post(
        intake,
        "/referrals",
        referral_body(citizen={"alias": "Other"}),
        **{"Idempotency-Key": "reden-2016-0001"},
    )
    assert_error(reused, 422, "idempotency_key_reused")
    assert_error(
        post(intake, "/referrals", referral_body(), **{"Idempotency-Key": "bad key!"}),
        400,
        "invalid_idempotency_key",
    )
    assert store.head() == head + 1


def test_a_replayed_referral_shows_a_worker_no_course_it_may_no_longer_see_and_is_logged(
    intake: FlaskClient, cph: str
) -> None:
    """A worker's referral answers with the course just begun. Replayed weeks later, when the course is another
    worker's, the answer is a read of it now: refused (what the worker sent, no more) and in the access log."""
    anna = {**auth("anna"), "Idempotency-Key": "anna-ref-1"}
    body = referral_body(citizen={"alias": "Zebulonia"})
    first = post(intake, "/referrals", body, **anna)
    assert first.status_code == 201 and first.get_json()["citizen_alias"] == "Zebulonia"
    case = first.get_json()["case_id"]
    for path, command in (
        (f"/programmes/{cph}/workers", {"worker_id": "bo", "method": "cti", "on": "2016-01-02"}),
        (f"/referrals/{case}/assessment", {"on": "2016-01-20"}),
        (f"/cases/{case}/assignment", {"worker_id": "bo", "on": "2016-01-21"}),
        (f"/cases/{case}/enrolment", {"on": "2016-02-01", "scores": {"housing": 3}}),
        (
            f"/cases/{case}/goals",
            {"on": "2016-02-01", "life_area": "mental_health", "description": "see a psychologist"},
        ),
    ):
        assert post(intake, path, command, **STAFF).status_code == 201, path
    assert intake.get(f"/cases/{case}", headers=auth("anna")).status_code == 404
    replayed = post(intake, "/referrals", body, **anna)
    assert replayed.status_code == 201 and replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.get_json() == {
        "case_id": case,
        "programme_id": "demo-cph",
        "referred_on": "2016-01-15",
        "positions": first.get_json()["positions"],
    }
    log = intake.get(f"/cases/{case}/access-log", headers=STAFF).get_json()["entries"]
    assert [(e["role"], e["action"], e["allowed"]) for e in log if e["role"] == "worker"][-1] == (
        "worker",
        "write referrals.create_referral",
        False,
    )
    # The coordinator, who sees the course, gets it as it is now.
    keyed = {**STAFF, "Idempotency-Key": "kk-ref-1"}
    mine = post(intake, "/referrals", body, **keyed).get_json()["case_id"]
    assert post(intake, f"/referrals/{mine}/assessment", {"on": "2016-01-20"}, **STAFF).status_code == 201
    assert post(intake, "/referrals", body, **keyed).get_json()["status"] == "in_assessment"


def test_a_command_retried_with_its_idempotency_key_gets_its_first_answer_not_a_refusal(
    intake: FlaskClient, cph: str, store: EventStore
) -> None:
    """A client whose answer was lost sends the command again with the same key. Decided again on the state the
    first sending made, each of these would be refused (the case is enrolled, assigned, closed, reopened already),
    telling the client that what it did failed."""
    case = post(intake, "/referrals", referral_body()).get_json()["case_id"]
    worker = {"worker_id": "anna", "method": "cti", "on": "2016-01-02"}
    assert post(intake, f"/programmes/{cph}/workers", worker, **STAFF).status_code == 201
    commands: list[tuple[str, dict[str, Any]]] = [
        (f"/referrals/{case}/assessment", {"on": "2016-01-20"}),
        (f"/cases/{case}/enrolment", {"on": "2016-02-01", "scores": {"housing": 3}}),
        (f"/cases/{case}/assignment", {"worker_id": "anna", "on": "2016-02-02"}),
        (f"/cases/{case}/closure", {"on": "2016-06-01", "reason": "dropped_out"}),
        (f"/cases/{case}/reopen", {"on": "2016-07-01", "consent": {"given": True}}),
    ]
    for n, (path, body) in enumerate(commands):
        key = {"Idempotency-Key": f"kk-command-{n}"}
        first = post(intake, path, body, **STAFF, **key)
        assert first.status_code == 201, first.get_json()
        head = store.head()
        again = post(intake, path, body, **STAFF, **key)
        assert again.status_code == 201, (path, again.get_json())
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.get_json()["positions"] == first.get_json()["positions"]
        assert store.head() == head
    assert (
        post(intake, commands[-1][0], commands[-1][1], **STAFF, **key).get_json()["case_id"]
        == (first.get_json()["case_id"])
    )
    # Without its key a repeat is refused, as before; the key with another request is refused as reused.
    closure, body = commands[3]
    assert_error(post(intake, closure, body, **STAFF), 409, "case_closed")
    other = {**body, "on": "2016-06-02"}
    assert_error(
        post(intake, closure, other, **STAFF, **{"Idempotency-Key": "kk-command-3"}), 422, "idempotency_key_reused"
    )
    assert_error(post(intake, closure, body, **STAFF, **{"Idempotency-Key": "kk-never-sent"}), 409, "case_closed")


def test_lifecycle_commands_and_their_refusals(intake: FlaskClient, cph: str, store: EventStore) -> None:
    case = post(intake, "/referrals", referral_body()).get_json()["case_id"]

    def staff(path: str, body: dict[str, Any]) -> Any:
        return post(intake, path, body, **STAFF)

    assert_error(staff(f"/referrals/{case}/assessment", {"on": "2016-01-14"}), 409, "date_before_referral")
    started = staff(f"/referrals/{case}/assessment", {"on": "2016-01-20"})
    assert started.status_code == 201 and started.get_json()["status"] == "in_assessment"
    assert intake.get(f"/referrals/{case}", headers=PARTNER).get_json()["outcome"] == "accepted"
    assert_error(staff(f"/referrals/{case}/assessment", {"on": "2016-01-21"}), 409, "already_in_assessment")
    assert_error(staff(f"/referrals/{case}/decline", {"on": "2016-01-21"}), 422, "validation_failed")
    declined = staff(f"/referrals/{case}/decline", {"on": "2016-01-22", "reason": "outside target group"})
    assert declined.get_json()["status"] == "declined"
    assert declined.get_json()["outcome_reason"] == "outside target group"
    # The referring partner sees the outcome and its reason, and may no longer withdraw.
    assert intake.get(f"/referrals/{case}", headers=PARTNER).get_json() | {"case_id": "x"} == {
        "case_id": "x",
        "programme_id": "demo-cph",
        "referred_on": "2016-01-15",
        "outcome": "declined",
        "reason": "outside target group",
    }
    assert_error(post(intake, f"/referrals/{case}/withdraw", {"reason": "x"}), 409, "not_possible_now")
    assert [e.event_type for e in store.read_stream(case)] == [
        "ReferralReceived",
        "AssessmentStarted",
        "ReferralDeclined",
    ]


def test_the_cpr_number_is_never_stored(intake: FlaskClient, cph: str, connection: redis.Redis) -> None:
    response = post(intake, "/referrals", referral_body(citizen={"cpr": "010190-1234"}))
    assert response.status_code == 201
    assert "0101901234" not in response.get_data(as_text=True)
    for key in connection.scan_iter():
        dumped = repr(connection.dump(key))
        assert "0101901234" not in dumped and "010190-1234" not in dumped, key


def test_whether_a_view_or_hook_is_async_is_asked_once_not_on_every_request(
    intake: FlaskClient, cph: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flask asks it before every call of a view or hook (a referral runs eight hooks); the answer cannot change."""
    asked: list[object] = []
    ask = Flask.ensure_sync

    def asking(app: Flask, func: Callable[..., Any]) -> Callable[..., Any]:
        asked.append(func)
        return ask(app, func)

    monkeypatch.setattr(Flask, "ensure_sync", asking)
    assert post(intake, "/referrals", referral_body()).status_code == 201
    assert asked  # the referral's view and hooks, asked the first time they ran
    first = list(asked)
    assert post(intake, "/referrals", referral_body()).status_code == 201
    assert asked == first
