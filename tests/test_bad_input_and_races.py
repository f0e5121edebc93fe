"""Many clients racing on one case, and hostile input: every write lands with the right version or gets a
clear 409; every bad request a clear 4xx with the documented body; nothing half-written."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import redis
from flask.testing import FlaskClient

from services.intake.app import create_app
from shared.config import Settings
from shared.eventstore import EventStore
from tests.conftest import COPENHAGEN, STAFF, referral_body


def race(connection: redis.Redis, n: int, request: Callable[[FlaskClient], Any]) -> list[Any]:
    app = create_app(connection, Settings.from_env({}))
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(request(app.test_client()))) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def enrolled(intake: FlaskClient) -> str:
    case = str(intake.post("/referrals", json=referral_body(), headers=STAFF).get_json()["case_id"])
    intake.post(f"/referrals/{case}/assessment", json={"on": "2016-01-20"}, headers=STAFF)
    assert (
        intake.post(
            f"/cases/{case}/enrolment", json={"on": "2016-02-01", "scores": {"housing": 3}}, headers=STAFF
        ).status_code
        == 201
    )
    return case


def test_racing_writes_on_one_case_are_never_lost(
    intake: FlaskClient, cph: str, connection: redis.Redis, store: EventStore
) -> None:
    case = enrolled(intake)
    before = store.stream_version(case)
    stars = race(
        connection,
        8,
        lambda c: c.post(f"/cases/{case}/stars", json={"on": "2016-03-01", "scores": {"housing": 4}}, headers=STAFF),
    )
    landed = [r for r in stars if r.status_code == 201]
    assert {r.status_code for r in stars} <= {201, 409}
    assert all(r.get_json()["error"]["code"] == "concurrent_update" for r in stars if r.status_code == 409)
    events = store.read_stream(case)
    assert len(events) == before + len(landed)  # every 201 is in the log, and nothing else
    assert [e.stream_position for e in events] == list(range(1, len(events) + 1))

    other = str(intake.post("/referrals", json=referral_body(), headers=STAFF).get_json()["case_id"])
    starts = race(
        connection, 8, lambda c: c.post(f"/referrals/{other}/assessment", json={"on": "2016-01-20"}, headers=STAFF)
    )
    assert sorted(r.status_code for r in starts) == [201] + [409] * 7
    assert {r.get_json()["error"]["code"] for r in starts if r.status_code == 409} <= {
        "already_in_assessment",
        "concurrent_update",
    }


def test_racing_assignments_to_one_free_slot(intake: FlaskClient, cph: str, connection: redis.Redis) -> None:
    body = {"worker_id": "solo", "method": "cti", "capacity": 1, "on": "2016-01-02"}
    assert intake.post(f"/programmes/{cph}/workers", json=body, headers=STAFF).status_code == 201
    cases = [enrolled(intake) for _ in range(6)]
    results = race(
        connection,
        6,
        lambda c: c.post(
            f"/cases/{cases.pop()}/assignment", json={"worker_id": "solo", "on": "2016-02-02"}, headers=STAFF
        ),
    )
    assert sorted(r.status_code for r in results) == [201] + [409] * 5
    load = intake.get(f"/programmes/{cph}/caseload", headers=STAFF).get_json()["workers"][0]["load"]
    assert load == 1


def test_hostile_input_gets_a_clear_4xx(intake: FlaskClient, cph: str, store: EventStore) -> None:
    case = enrolled(intake)
    head = store.head()
    json_headers = {**STAFF, "Content-Type": "application/json"}

    def error(response: Any, status: int) -> dict[str, Any]:
        assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:200])
        body: dict[str, Any] = response.get_json()["error"]
        assert {"code", "message"} <= set(body)
        return body

    error(intake.post("/referrals", data=b'{"programme_id": "\xff\xfe"}', headers=json_headers), 400)  # bad UTF-8
    error(intake.post("/referrals", data=b"\x00" * 10, headers=json_headers), 400)
    error(intake.post("/referrals", data="[1, 2]", headers=json_headers), 400)
    error(intake.post("/referrals", data="{}", headers={**STAFF, "Content-Type": "application/xml"}), 415)
    error(intake.post("/referrals", data="x" * 200_000, headers=json_headers), 413)
    huge = 10**30
    for path, body in [
        (f"/cases/{case}/stars", {"scores": {"housing": huge}}),
        (f"/cases/{case}/stars", {"scores": {"housing": "3"}}),  # a string is not a score
        (f"/cases/{case}/who5", {"items": [huge, 1, 1, 1, 1]}),
        (f"/programmes/{cph}/workers", {"worker_id": "w", "method": "cti", "capacity": huge}),
        (f"/programmes/{cph}/changes", {"caseload_limit": -1}),
        (f"/cases/{case}/contacts", {"kind": "phone", "on": "9999-12-31"}),
        (f"/cases/{case}/contacts", {"kind": "phone", "on": "1899-01-01"}),
        (f"/cases/{case}/contacts", {"kind": "phone", "on": "2016-02-30"}),
        (f"/cases/{case}/goals", {"life_area": "housing", "description": "x" * 10_000}),
        ("/referrals", referral_body(citizen={"alias": "a" * 101})),
        ("/referrals", referral_body(citizen={"birth_date": "1800-01-01"})),
        ("/referrals", referral_body(programme_id="x" * 500)),
        ("/referrals", referral_body(consent={"given": "yes"})),  # consent is JSON's true, not a word for it
        ("/referrals", referral_body(consent={"given": 1})),
        ("/referrals", referral_body(self_referral="false")),
        (f"/cases/{case}/addiction-treatment", {"in_treatment": "no"}),
    ]:
        assert error(intake.post(path, json=body, headers=STAFF), 422)["code"] == "validation_failed", (path, body)
    assert intake.get(f"/cases/{case}?on=not-a-date", headers=STAFF).status_code == 422
    assert store.head() == head  # nothing half-written


def test_a_process_that_found_no_programme_finds_it_once_another_process_defined_it(
    intake: FlaskClient, connection: redis.Redis
) -> None:
    """Each gunicorn worker holds what it has seen of the log; an absence it saw is not a fact to hold: another
    worker may since have defined the programme (a referral read its programme as last seen, and refused it)."""
    other = create_app(connection, Settings.from_env({})).test_client()  # another worker process
    early = other.post("/referrals", json=referral_body(), headers=STAFF)
    assert early.get_json()["error"]["fields"] == {"programme_id": ["no such programme"]}
    assert intake.post("/programmes", json=COPENHAGEN, headers=STAFF).status_code == 201
    assert other.post("/referrals", json=referral_body(), headers=STAFF).status_code == 201
