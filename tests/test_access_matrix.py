"""Every endpoint x every role x own/other: 401, 403, 404 (never an existence leak) or success. Both backends.

Pairs: Reden referred the case, LivaRehab did not (and one of Reden's keys is for another programme); the
worker anna has the course, bo does not; the coordinator's key is for this programme, the other coordinator's
for another (as is one of the evaluator's keys). The expected table is
the access policy in one place: if any cell changes, the test fails with a diff of the table.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import COPENHAGEN, STAFF, referral_body
from tests.support import auth

ROLES = [
    "none",
    "bad-key",
    "reden",
    "reden-other",
    "livarehab",
    "anna",
    "bo",
    "coordinator",
    "other-coordinator",
    "evaluator",
    "evaluator-other",
    "admin",
]
_counter = itertools.count()


def headers(role: str) -> dict[str, str]:
    if role == "none":
        return {}
    if role == "bad-key":
        return {"Authorization": "Bearer cfk.reden.0123456789abcdef." + "x" * 43}
    return auth(role)


class World:
    def __init__(self, intake: FlaskClient) -> None:
        self.intake = intake

    def call(self, method: str, path: str, body: dict[str, Any] | None, as_: dict[str, str]) -> Any:
        if method == "GET":
            return self.intake.get(path, headers=as_)
        return self.intake.post(path, json=body or {}, headers=as_)

    def staff(self, path: str, body: dict[str, Any]) -> None:
        response = self.call("POST", path, body, STAFF)
        assert response.status_code == 201, (path, response.get_json())

    def case(self, state: str, assign: bool = True) -> str:
        """A fresh case referred by Reden, in the given state; from "assessment" on assigned to anna if asked."""
        created = self.call("POST", "/referrals", referral_body(), auth("reden"))
        case = str(created.get_json()["case_id"])
        if state == "referred":
            return case
        self.staff(f"/referrals/{case}/assessment", {"on": "2016-01-20"})
        if assign:
            self.staff(f"/cases/{case}/assignment", {"worker_id": "anna", "on": "2016-01-20"})
        if state == "assessment":
            return case
        self.staff(f"/cases/{case}/enrolment", {"on": "2016-02-01", "scores": {"housing": 3}})
        if state == "enrolled":
            return case
        self.staff(f"/cases/{case}/closure", {"on": "2016-03-01", "reason": "completed"})
        return case


# (name, method, path template, body, case state or None for programme-level endpoints)
ENDPOINTS: list[tuple[str, str, str, Callable[[], dict[str, Any]] | None, str | None]] = [
    ("read referral", "GET", "/referrals/{c}", None, "referred"),
    ("start assessment", "POST", "/referrals/{c}/assessment", lambda: {"on": "2016-01-20"}, "referred"),
    ("decline", "POST", "/referrals/{c}/decline", lambda: {"reason": "x"}, "referred"),
    ("withdraw", "POST", "/referrals/{c}/withdraw", lambda: {"reason": "x"}, "referred"),
    ("refer on", "POST", "/referrals/{c}/refer-on", lambda: {"to": "x"}, "referred"),
    ("enrol", "POST", "/cases/{c}/enrolment", lambda: {"on": "2016-02-01", "scores": {"housing": 2}}, "assessment"),
    ("read case", "GET", "/cases/{c}", None, "enrolled"),
    ("access log", "GET", "/cases/{c}/access-log", None, "enrolled"),
    ("star", "POST", "/cases/{c}/stars", lambda: {"on": "2016-04-01", "scores": {"housing": 4}}, "enrolled"),
    ("who5", "POST", "/cases/{c}/who5", lambda: {"on": "2016-04-01", "items": [1, 2, 3, 4, 5]}, "enrolled"),
    (
        "purpose",
        "POST",
        "/cases/{c}/purposes",
        lambda: {"on": "2016-04-01", "purpose": "exit_prostitution"},
        "enrolled",
    ),
    (
        "goal",
        "POST",
        "/cases/{c}/goals",
        lambda: {"on": "2016-04-01", "life_area": "housing", "description": "x"},
        "enrolled",
    ),
    ("contact", "POST", "/cases/{c}/contacts", lambda: {"on": "2016-04-01", "kind": "phone"}, "enrolled"),
    ("housing", "POST", "/cases/{c}/housing", lambda: {"on": "2016-04-01", "situation": "temporary"}, "enrolled"),
    ("phase", "POST", "/cases/{c}/phase", lambda: {"on": "2016-04-01", "phase": "phase_2", "reason": "x"}, "enrolled"),
    ("assign", "POST", "/cases/{c}/assignment", lambda: {"on": "2016-04-01", "worker_id": "bo"}, "enrolled"),
    ("close", "POST", "/cases/{c}/closure", lambda: {"on": "2016-04-01", "reason": "completed"}, "enrolled"),
    ("reopen", "POST", "/cases/{c}/reopen", lambda: {"on": "2016-04-01", "consent": {"given": True}}, "closed"),
    ("refer", "POST", "/referrals", lambda: referral_body(), None),
    ("read programme", "GET", "/programmes/demo-cph", None, None),
    ("caseload", "GET", "/programmes/demo-cph/caseload", None, None),
    ("list cases", "GET", "/programmes/demo-cph/cases", None, None),
    ("overdue of anna", "GET", "/programmes/demo-cph/workers/anna/overdue-assessments", None, None),
    ("change programme", "POST", "/programmes/demo-cph/changes", lambda: {"funding_end": "2016-12-31"}, None),
    (
        "add worker",
        "POST",
        "/programmes/demo-cph/workers",
        lambda: {"worker_id": f"w{next(_counter)}", "method": "cti"},
        None,
    ),
    ("capacity", "POST", "/programmes/demo-cph/workers/bo/capacity", lambda: {"capacity": 5}, None),
    ("probable matches", "GET", "/programmes/demo-cph/probable-matches", None, None),
    ("list partners", "GET", "/admin/partners", None, None),
]

OK = "ok"
# Per role: what every endpoint answers unless listed. "ok" is 200 for GET, 201 for POST.
EXPECTED: dict[str, dict[str, Any]] = {
    "none": {"*": 401},
    "bad-key": {"*": 401},
    "admin": {"*": 403, "list partners": OK},
    "evaluator": {"*": 403},
    "evaluator-other": {"*": 403},
    "reden": {"*": 403, "read referral": OK, "withdraw": OK, "refer": OK},
    "livarehab": {"*": 403, "read referral": 404, "withdraw": 404, "refer": OK},
    # Reden's own referrals, but this key was issued for another programme: as if they did not exist, and a
    # referral into this one is refused as into a programme that does not exist
    "reden-other": {"*": 403, "read referral": 404, "withdraw": 404, "refer": 422},
    "anna": {
        "*": OK,
        **dict.fromkeys(["read referral", "start assessment", "decline", "withdraw", "refer on"], 404),
        **dict.fromkeys(["access log", "assign", "reopen", "caseload", "list cases"], 403),
        **dict.fromkeys(["change programme", "add worker", "capacity", "probable matches", "list partners"], 403),
    },
    "bo": {
        "*": 404,
        **dict.fromkeys(["access log", "assign", "reopen", "caseload", "list cases"], 403),
        **dict.fromkeys(["change programme", "add worker", "capacity", "probable matches", "list partners"], 403),
        "refer": OK,
        "read programme": OK,
    },
    "coordinator": {"*": OK, "list partners": 403},
    "other-coordinator": {"*": 404, "list partners": 403},
}


def expected(role: str, endpoint: str, method: str) -> int:
    want = EXPECTED[role].get(endpoint, EXPECTED[role]["*"])
    return (200 if method == "GET" else 201) if want == OK else int(want)


@pytest.fixture
def world(intake: FlaskClient, cph: str) -> World:
    limit = {"caseload_limit": 100, "on": "2016-01-02"}  # room for every cell's fresh course
    assert intake.post(f"/programmes/{cph}/changes", json=limit, headers=STAFF).status_code == 201
    for worker in ("anna", "bo"):
        body = {"worker_id": worker, "method": "cti", "capacity": 100, "on": "2016-01-02"}
        assert intake.post(f"/programmes/{cph}/workers", json=body, headers=STAFF).status_code == 201
    other = {**COPENHAGEN, "programme_id": "other-programme"}
    assert intake.post("/programmes", json=other, headers=auth("other-coordinator")).status_code == 201
    return World(intake)


def test_every_endpoint_for_every_role(world: World) -> None:
    actual, wanted = {}, {}
    for name, method, template, body, state in ENDPOINTS:
        for role in ROLES:
            path = template.format(c=world.case(state, assign=role in ("anna", "bo"))) if state else template
            response = world.call(method, path, body() if body else None, headers(role))
            actual[(name, role)] = response.status_code
            wanted[(name, role)] = expected(role, name, method)
            if response.status_code >= 400:
                assert set(response.get_json()["error"]) >= {"code", "message"}, (name, role)
    assert actual == wanted


def test_reporting_for_every_role(world: World, reporting: FlaskClient) -> None:
    want = {
        "none": 401,
        "bad-key": 401,
        "admin": 403,
        "anna": 403,
        "bo": 403,
        "reden": 200,
        "reden-other": 404,
        "livarehab": 200,
        "coordinator": 200,
        "other-coordinator": 404,
        "evaluator": 200,
        "evaluator-other": 404,
    }
    got = {
        role: reporting.get("/programmes/demo-cph/referrals-per-partner", headers=headers(role)).status_code
        for role in ROLES
    }
    assert got == want


def test_out_of_scope_is_indistinguishable_from_missing(world: World) -> None:
    case = world.case("enrolled")
    hidden = world.intake.get(f"/cases/{case}", headers=auth("bo"))
    missing = world.intake.get("/cases/case-" + "0" * 32, headers=auth("bo"))
    assert (hidden.status_code, hidden.get_json()) == (missing.status_code, missing.get_json())
    other = world.intake.get(f"/referrals/{case}", headers=auth("livarehab"))
    assert (other.status_code, other.get_json()) == (404, missing.get_json())


def test_every_case_access_is_logged_for_the_coordinator(world: World) -> None:
    case = world.case("enrolled")
    world.intake.get(f"/cases/{case}", headers=auth("anna"))
    world.intake.get(f"/cases/{case}", headers=auth("bo"))  # refused (not her course), and logged as refused
    world.intake.post(f"/cases/{case}/contacts", json={"kind": "phone", "on": "2016-04-01"}, headers=auth("anna"))
    assert world.intake.get(f"/cases/{case}", headers=auth("evaluator")).status_code == 403  # never for its role
    missing = "case-" + "0" * 32
    assert world.intake.get(f"/cases/{missing}", headers=auth("evaluator")).status_code == 403
    log = world.intake.get(f"/cases/{case}/access-log", headers=STAFF).get_json()["entries"]
    seen = [(e["partner"], e["role"], e["action"], e["allowed"]) for e in log]
    # The referral that made the case comes first: its write is the case's first event, by Reden's key.
    assert seen[0] == ("reden", "referrer", "write referrals.create_referral", True)
    assert ("kk-socialforvaltning", "worker", "read referrals.get_case", True) in seen
    assert ("kk-socialforvaltning", "worker", "read referrals.get_case", False) in seen
    assert ("kk-socialforvaltning", "worker", "write courses.record_situation", True) in seen
    assert seen[-2:] == [
        ("vive", "evaluator", "read referrals.get_case", False),
        ("kk-socialforvaltning", "coordinator", "read courses.get_access_log", True),
    ]
    assert all(set(e) == {"case_id", "at", "partner", "key", "role", "action", "allowed"} for e in log)
    assert world.intake.get(f"/cases/{missing}/access-log", headers=STAFF).status_code == 404  # no log made
    assert not world.intake.application.extensions["intake"].store.redis.exists(f"cf:audit:case:{missing}")
