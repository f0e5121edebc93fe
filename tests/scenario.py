"""A small fixed programme whose statistics are worked out by hand in tests/test_reports.py.

Copenhagen-like: recruitment Jan-Mar 2016, funding ends 31 Dec 2016, 12-month CTI courses.

    case  partner    referred    then
    A     reden      2015-11-02  assessment 11-20, enrolled 2016-01-15 (anna), closed completed 2016-06-30
    B     reden      2015-11-10  declined 2015-11-25
    C     livarehab  2015-12-01  assessment 12-05, enrolled 2016-02-01 (anna): truncated (full end 2017-02-01)
    D     livarehab  2016-01-10  assessment 2016-01-12, and no further
    E     self       2016-01-20  withdrawn 2016-02-01
    F     reden      2016-02-03  CPR 010190-1234, referred on 2016-02-20
    G     livarehab  2016-02-15  the same CPR number: the same citizen as F

Measures: stars A 15 Jan {housing 2, mental_health 4}, A 15 Mar {5, 4}; C 1 Feb {3, 3}, C 1 Apr {housing 2}.
WHO-5: A 24 % then 52 %; C 40 %. Goals: A housing (achieved), A network; C finances (dropped).
A: born 1998 (under 18 at referral); contacts 16, 20 (community), 25 (provider), 28 (informal) Jan, 1 Feb
(community), 10 Apr and 20 May (phone); phase 2 early on 15 May; permanent housing 1 Apr; addiction treatment
1 Feb - 1 Apr; activity-ready 1 Feb, education-ready 1 Jun.
C: born 1993 (18-24); housing temporary 1 Mar, permanent 1 May, lost 1 Sep; in addiction treatment from 10 Mar;
activity-ready 1 Mar. No contacts recorded.
"""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.conftest import STAFF, referral_body
from tests.support import auth


def build(intake: FlaskClient) -> dict[str, str]:
    def post(path: str, body: dict[str, Any], key: dict[str, str] = STAFF) -> dict[str, Any]:
        response = intake.post(path, json=body, headers=key)
        assert response.status_code == 201, (path, response.get_json())
        result: dict[str, Any] = response.get_json()
        return result

    assert (
        intake.post(
            "/programmes/demo-cph/workers",
            json={"worker_id": "anna", "method": "cti", "on": "2015-10-01"},
            headers=STAFF,
        ).status_code
        == 201
    )

    def refer(key: str, on: str, **extra: Any) -> str:
        body = referral_body(referred_on=on, **extra)
        return str(post("/referrals", body, STAFF if key == "self" else auth(key))["case_id"])

    cases = {
        "A": refer("reden", "2015-11-02", citizen={"alias": "A", "birth_date": "1998-03-01"}),  # 17: under 18
        "B": refer("reden", "2015-11-10"),
        "C": refer("livarehab", "2015-12-01", citizen={"alias": "C", "birth_date": "1993-06-01"}),  # 22: 18-24
        "D": refer("livarehab", "2016-01-10"),
        "E": refer("self", "2016-01-20", self_referral=True),
        "F": refer("reden", "2016-02-03", citizen={"cpr": "010190-1234"}),
        "G": refer("livarehab", "2016-02-15", citizen={"cpr": "010190-1234"}),
    }
    a, b, c, d, e, f = (cases[k] for k in "ABCDEF")
    post(f"/referrals/{a}/assessment", {"on": "2015-11-20"})
    post(f"/referrals/{b}/decline", {"on": "2015-11-25", "reason": "outside target group"})
    post(f"/referrals/{c}/assessment", {"on": "2015-12-05"})
    post(f"/cases/{a}/enrolment", {"on": "2016-01-15", "scores": {"housing": 2, "mental_health": 4}})
    post(f"/cases/{a}/assignment", {"on": "2016-01-15", "worker_id": "anna"})
    post(f"/referrals/{d}/assessment", {"on": "2016-01-12"})
    post(f"/cases/{c}/enrolment", {"on": "2016-02-01", "scores": {"housing": 3, "mental_health": 3}})
    post(f"/cases/{c}/assignment", {"on": "2016-02-01", "worker_id": "anna"})
    post(f"/referrals/{e}/withdraw", {"on": "2016-02-01", "reason": "moved away"})
    post(f"/referrals/{f}/refer-on", {"on": "2016-02-20", "to": "psykiatrien"})
    post(f"/cases/{a}/who5", {"on": "2016-01-15", "items": [1, 1, 1, 2, 1]})  # 6 -> 24 %
    post(f"/cases/{c}/who5", {"on": "2016-02-01", "items": [2, 2, 2, 2, 2]})  # 10 -> 40 %
    post(f"/cases/{a}/stars", {"on": "2016-03-15", "scores": {"housing": 5, "mental_health": 4}})
    post(f"/cases/{a}/who5", {"on": "2016-03-15", "items": [3, 2, 3, 2, 3]})  # 13 -> 52 %
    post(f"/cases/{c}/stars", {"on": "2016-04-01", "scores": {"housing": 2}})  # a partial star
    post(
        f"/cases/{a}/goals", {"on": "2016-01-20", "life_area": "housing", "description": "own flat", "goal_id": "flat"}
    )
    post(f"/cases/{a}/goals", {"on": "2016-01-20", "life_area": "network", "description": "see family"})
    post(f"/cases/{c}/goals", {"on": "2016-02-05", "life_area": "finances", "description": "budget", "goal_id": "b"})
    post(f"/cases/{a}/goals/flat/achieve", {"on": "2016-05-01"})
    post(f"/cases/{c}/goals/b/drop", {"on": "2016-05-02"})
    for on, kind in (
        ("2016-01-16", "community_meeting"),
        ("2016-01-20", "community_meeting"),
        ("2016-01-25", "provider_meeting"),
        ("2016-01-28", "informal_support_meeting"),
        ("2016-02-01", "community_meeting"),
        ("2016-04-10", "phone"),
        ("2016-05-20", "phone"),
    ):
        post(f"/cases/{a}/contacts", {"on": on, "kind": kind})
    post(f"/cases/{a}/phase", {"on": "2016-05-15", "phase": "phase_2", "reason": "housed early"})
    post(f"/cases/{a}/housing", {"on": "2016-04-01", "situation": "permanent"})
    post(f"/cases/{a}/addiction-treatment", {"on": "2016-02-01", "in_treatment": True})
    post(f"/cases/{a}/addiction-treatment", {"on": "2016-04-01", "in_treatment": False})
    post(f"/cases/{a}/job-centre-category", {"on": "2016-02-01", "category": "activity_ready"})
    post(f"/cases/{a}/job-centre-category", {"on": "2016-06-01", "category": "education_ready"})
    post(f"/cases/{c}/housing", {"on": "2016-03-01", "situation": "temporary"})
    post(f"/cases/{c}/housing", {"on": "2016-05-01", "situation": "permanent"})
    post(f"/cases/{c}/housing", {"on": "2016-09-01", "situation": "lost"})
    post(f"/cases/{c}/addiction-treatment", {"on": "2016-03-10", "in_treatment": True})
    post(f"/cases/{c}/job-centre-category", {"on": "2016-03-01", "category": "activity_ready"})
    post(f"/cases/{a}/closure", {"on": "2016-06-30", "reason": "completed"})
    return cases
