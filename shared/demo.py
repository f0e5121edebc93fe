"""A seeded synthetic programme generator: courses like the Copenhagen and Ballerup ones, posted through the
running intake service as partners and staff would, so every report has something to show.

    caseflow-suite up --demo-citizens 80 --demo-seed 7
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from urllib.error import HTTPError

from shared.domain.calendar import add_months
from shared.domain.programme import DANISH_LIFE_AREAS, PHASED_METHODS

Call = Callable[..., Any]

PROGRAMMES: list[dict[str, Any]] = [
    {
        "programme_id": "cph-2016",
        "name": "Exit prostitution, Copenhagen 2016 (synthetic)",
        "methods": ["cti"],
        "course_months": 12,
        "phases": [
            {"name": "phase_1", "months": 4},
            {"name": "phase_2", "months": 4},
            {"name": "phase_3", "months": 4},
        ],
        "recruitment_start": "2016-01-01",
        "recruitment_end": "2016-03-31",
        "funding_end": "2016-12-31",
        "purposes": ["exit_prostitution", "improve_life_situation"],
        "targets": {"cti": 20},
        "workers": [("cph-anna", "cti"), ("cph-bo", "cti"), ("cph-cy", "cti")],
        "key": "CPH_2016_COORDINATOR_KEY",
        "referrals_from": "2015-09-01",
        "ages": (19, 45),
    },
    {
        "programme_id": "ballerup-2012",
        "name": "Young homeless, Ballerup 2012 (synthetic)",
        "methods": ["cti", "icm"],
        "course_months": 9,
        "phases": [
            {"name": "phase_1", "months": 3},
            {"name": "phase_2", "months": 3},
            {"name": "phase_3", "months": 3},
        ],
        "recruitment_start": "2012-01-01",
        "recruitment_end": "2012-12-31",
        "funding_end": "2013-09-30",
        "purposes": ["find_housing", "improve_life_situation"],
        "targets": {"cti": 20, "icm": 10},
        "workers": [("bal-dina", "cti"), ("bal-emil", "cti"), ("bal-frej", "icm")],
        "key": "BALLERUP_2012_COORDINATOR_KEY",
        "referrals_from": "2011-10-01",
        "ages": (16, 24),
    },
]
AREAS = DANISH_LIFE_AREAS
CONTACTS = ("community_meeting", "home_visit", "phone", "provider_meeting", "informal_support_meeting")


def definition(spec: dict[str, Any]) -> dict[str, Any]:
    """The body of ``POST /programmes`` for one of PROGRAMMES (without the generator's own settings)."""
    return {k: v for k, v in spec.items() if k not in ("workers", "referrals_from", "ages", "key")}


def demo_programme(today: date) -> dict[str, Any]:
    """The walk-through's programme: the Copenhagen one placed around today, recruiting now, its funding
    ending 12 months after recruitment began (so courses are cut short, as in the real project)."""
    start = today - timedelta(days=60)
    return definition(PROGRAMMES[0]) | {
        "programme_id": "demo-cph",
        "name": "Exit prostitution (demo, Copenhagen-like)",
        "recruitment_start": start.isoformat(),
        "recruitment_end": (today + timedelta(days=30)).isoformat(),
        "funding_end": (start + timedelta(days=365)).isoformat(),
    }


def generate(call: Call, intake: str, keys: dict[str, str], citizens: int, seed: int) -> dict[str, int]:
    """Define the programmes and post ``citizens`` referrals and courses, split between them."""
    rng = random.Random(seed)
    referrers = [keys["REDEN_KEY"], keys["LIVAREHAB_KEY"]]
    made = {}
    for index, spec in enumerate(PROGRAMMES):
        coordinator = keys[spec["key"]]
        call("POST", f"{intake}/programmes", definition(spec), coordinator)
        for worker, method in spec["workers"]:
            body = {"worker_id": worker, "method": method, "on": spec["referrals_from"]}
            call("POST", f"{intake}/programmes/{spec['programme_id']}/workers", body, coordinator)
        share = citizens // len(PROGRAMMES) + (1 if index < citizens % len(PROGRAMMES) else 0)
        for _ in range(share):
            _course(call, intake, spec, coordinator, rng.choice([*referrers, coordinator]), rng)
        made[spec["programme_id"]] = share
    return made


def _course(call: Call, intake: str, spec: dict[str, Any], staff: str, referrer: str, rng: random.Random) -> None:
    start, window_end = date.fromisoformat(spec["referrals_from"]), date.fromisoformat(spec["recruitment_end"])
    referred = start + timedelta(days=rng.randrange((window_end - start).days))
    young, old = spec["ages"]
    born = referred - timedelta(days=365 * rng.randint(young, old) + rng.randrange(365))
    body = {
        "programme_id": spec["programme_id"],
        "consent": {"given": True},
        "referred_on": referred.isoformat(),
        "citizen": {"alias": f"demo-{rng.randrange(10**6)}", "birth_date": born.isoformat()},
    }
    if referrer == staff and rng.random() < 0.5:
        body["self_referral"] = True
    case = call("POST", f"{intake}/referrals", body, referrer)["case_id"]

    def post(path: str, on: date, **fields: Any) -> None:
        url = f"{intake}/cases/{case}/{path}" if not path.startswith("/") else f"{intake}{path}"
        try:
            call("POST", url, {"on": on.isoformat(), **fields}, staff)
        except HTTPError as refused:  # random data may meet a rule (a full caseload, say): skip that step
            if refused.code != 409:
                raise

    fate = rng.random()
    if fate < 0.12:
        return post(
            f"/referrals/{case}/decline", referred + timedelta(days=rng.randint(3, 20)), reason="not in target group"
        )
    if fate < 0.2:
        return post(f"/referrals/{case}/withdraw", referred + timedelta(days=rng.randint(3, 20)), reason="changed mind")
    assessed = referred + timedelta(days=rng.randint(2, 15))
    post(f"/referrals/{case}/assessment", assessed)
    enrol_on = max(assessed + timedelta(days=rng.randint(5, 30)), date.fromisoformat(spec["recruitment_start"]))
    if enrol_on > window_end:
        return post(f"/referrals/{case}/refer-on", assessed + timedelta(days=3), to="another service")
    method = rng.choice(spec["methods"])
    scores = {area: rng.randint(1, 5) for area in rng.sample(AREAS, 5)}
    post("enrolment", enrol_on, scores=scores, method=method)
    workers = [w for w, m in spec["workers"] if m == method]
    post("assignment", enrol_on, worker_id=rng.choice(workers), waitlist_if_full=True)
    end = min(add_months(enrol_on, spec["course_months"]), date.fromisoformat(spec["funding_end"]))
    drop_out = end - timedelta(days=rng.randint(30, 120)) if rng.random() < 0.15 else None
    last = drop_out or end
    _measures(post, rng, enrol_on, last, scores, spec, phased=method in PHASED_METHODS)
    post(
        "closure",
        last,
        reason="dropped_out"
        if drop_out
        else "completed"
        if end < date.fromisoformat(spec["funding_end"])
        else "funding_ended",
    )


def _measures(
    post: Callable[..., None],
    rng: random.Random,
    enrolled: date,
    last: date,
    scores: dict[str, int],
    spec: dict[str, Any],
    phased: bool,
) -> None:
    """Stars and WHO-5 every 2 months, contacts falling phase by phase (a CTI course's phase moves too), goals,
    housing and job-centre moves."""
    post("who5", enrolled, items=[rng.randint(0, 3) for _ in range(5)])
    goals = rng.sample(list(scores), 2)
    for area in goals:
        post("goals", enrolled, life_area=area, description="a goal of their own", goal_id=f"g-{area}")
    phase_starts = [enrolled]
    for phase in spec["phases"][:-1]:
        phase_starts.append(add_months(phase_starts[-1], phase["months"]))
    for index, (phase, begins) in enumerate(zip(spec["phases"], phase_starts, strict=True)):
        if begins >= last:
            break
        if index and phased:
            post("phase", begins, phase=phase["name"], reason="phase plan")
        per_month = max(1, 5 - 2 * index)  # weekly, then fortnightly, then monthly
        stop = min(last, add_months(begins, phase["months"]))
        for _ in range(per_month * phase["months"]):
            day = begins + timedelta(days=rng.randrange(max(1, (stop - begins).days)))
            kind = "community_meeting" if index == 0 and rng.random() < 0.5 else rng.choice(CONTACTS)
            post("contacts", day, kind=kind)
    star_day = add_months(enrolled, 2)
    while star_day < last:
        scores = {a: max(1, min(10, s + rng.choice((-1, 0, 1, 1, 2)))) for a, s in scores.items()}
        post("stars", star_day, scores=scores)
        post("who5", star_day, items=[rng.randint(1, 5) for _ in range(5)])
        star_day = add_months(star_day, 2)
    housed = enrolled + timedelta(days=rng.randint(20, 150))
    if housed < last and rng.random() < 0.7:
        post("housing", housed, situation="permanent")
        if rng.random() < 0.1 and housed + timedelta(days=60) < last:
            post("housing", housed + timedelta(days=60), situation="lost")
    if rng.random() < 0.3 and enrolled + timedelta(days=10) < last:
        post("addiction-treatment", enrolled + timedelta(days=10), in_treatment=True)
    if rng.random() < 0.4 and enrolled + timedelta(days=5) < last:
        post("job-centre-category", enrolled + timedelta(days=5), category="activity_ready")
        ready = enrolled + timedelta(days=rng.randint(60, 300))
        if rng.random() < 0.4 and ready < last:
            post("job-centre-category", ready, category="education_ready")
    if rng.random() < 0.5 and last - timedelta(days=1) >= enrolled:
        post(f"goals/g-{goals[0]}/achieve", last - timedelta(days=1))
