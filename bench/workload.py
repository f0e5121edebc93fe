"""A benchmark workload: whole courses, not only referrals, appended through the real event store.

Each citizen is referred to one of two programmes; most are assessed, about half of those enrolled by
their first Outcomes Star, and an enrolled course then has WHO-5s, goals, housing, contacts, a
job-centre category, phase moves, a star every three months and a closure: about nine events per
citizen on average. Every event is decided by the domain's own rules (``decide_*``) and validated by
its schema when appended, so the log is one the suite itself could have written. Events of all
citizens are appended in date order, interleaved as they would be in a running programme. One referral in
twenty is of a citizen referred before (to either programme), so that a status count per citizen has citizens
with several referrals to look at.

The log has no caseload streams: a real programme's caseload stream holds its few dozen courses, and
one stream per programme for a hundred thousand citizens would measure a programme that cannot exist.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any

import redis

from shared.bootstrap import event_store
from shared.config import Settings
from shared.domain import events as ev
from shared.domain.calendar import add_months
from shared.domain.case import (
    CONTACT_KINDS,
    HOUSING_SITUATIONS,
    Case,
    decide_add_goal,
    decide_close,
    decide_decline,
    decide_goal_change,
    decide_phase,
    decide_refer_on,
    decide_situation,
    decide_star,
    decide_start_assessment,
    decide_who5,
    decide_withdraw,
    evolve,
)
from shared.domain.programme import DANISH_LIFE_AREAS, Programme, evolve_programme
from shared.events import DomainEvent, NewEvent
from shared.events.envelope import start_of_day
from shared.eventstore import EventStore, StreamWrite
from tests.conftest import start_redis_server

PARTNERS = ("reden", "livarehab", "kk-socialforvaltning", "self")
START = date(2016, 1, 1)
RECRUITMENT_DAYS = 3 * 365
REFERRED_AGAIN = 0.05


def programmes() -> dict[str, ev.ProgrammeDefined]:
    """Two programmes shaped like the Copenhagen and Ballerup ones, recruiting for three years."""
    common: dict[str, Any] = {
        "recruitment_start": START,
        "recruitment_end": START + timedelta(days=RECRUITMENT_DAYS),
        "funding_end": START + timedelta(days=RECRUITMENT_DAYS + 400),
        "caseload_limit": 20,
        "assessment_interval_months": 3,
        "scale_areas": DANISH_LIFE_AREAS,
        "scale_min": 1,
        "scale_max": 10,
    }
    return {
        "bench-cph": ev.ProgrammeDefined(
            name="Exit prostitution (benchmark)",
            methods=("cti",),
            course_months=12,
            phases=(("phase_1", 4), ("phase_2", 4), ("phase_3", 4)),
            purposes=("exit_prostitution", "improve_life_situation"),
            targets={"cti": 20},
            **common,
        ),
        "bench-ballerup": ev.ProgrammeDefined(
            name="Young homeless (benchmark)",
            methods=("cti", "icm"),
            course_months=9,
            phases=(("phase_1", 3), ("phase_2", 3), ("phase_3", 3)),
            purposes=("find_housing", "improve_life_situation"),
            targets={"cti": 20, "icm": 10},
            **common,
        ),
    }


Step = tuple[date, list[DomainEvent]]


def course(case_id: str, citizen: str, programme: Programme, on: date, rng: random.Random) -> list[Step]:
    """One citizen's whole timeline, each step decided on the case as it stands after the steps before."""
    steps: list[Step] = []
    case: Case | None = None

    def take(day: date, decided: list[DomainEvent]) -> None:
        nonlocal case
        for event in decided:
            case = evolve(case, case_id, event, day)
        steps.append((day, decided))

    referral = ev.ReferralReceived(
        programme_id=programme.programme_id,
        source=rng.choice(PARTNERS),
        consent_given=True,
        citizen_id=citizen,
        age_band=rng.choice(("under_18", "18_24", "25_plus")),
    )
    take(on, [referral])
    assert case is not None
    fate = rng.random()
    day = on + timedelta(days=rng.randint(0, 10))
    if fate < 0.1:
        take(day, [decide_withdraw(case, "citizen moved", day)])
        return steps
    take(day, [decide_start_assessment(case, day)])
    day += timedelta(days=rng.randint(3, 20))
    if fate < 0.4:
        take(day, [decide_decline(case, "outside target group", day)])
        return steps
    if fate < 0.5:
        take(day, [decide_refer_on(case, "housing office", day)])
        return steps

    def star(day: date, enrol: bool) -> list[DomainEvent]:
        assert case is not None
        scores = {area: rng.randint(1, 10) for area in programme.scale_areas}
        return decide_star(case, programme, scores, day, rng.choice(programme.methods), must_enrol=enrol)

    def who5(day: date) -> list[DomainEvent]:
        assert case is not None
        return [decide_who5(case, tuple(rng.randint(0, 5) for _ in range(5)), day)]

    take(day, star(day, enrol=True))
    take(day, who5(day))
    take(day, [decide_add_goal(case, programme, "g1", rng.choice(DANISH_LIFE_AREAS), "a goal", day)])
    enrolled_on = day
    planned_end = min(add_months(enrolled_on, programme.course_months), programme.funding_end)
    end = planned_end
    if rng.random() < 0.3:  # some leave early
        end = enrolled_on + timedelta(days=rng.randint(30, max(31, (planned_end - enrolled_on).days - 1)))
    day += timedelta(days=5)
    take(day, [decide_situation(case, ev.HousingChanged(situation=rng.choice(HOUSING_SITUATIONS)), day)])
    # Month of the course -> the phase that starts then (phase 2 after phase 1's months, and so on).
    phases = programme.phases
    next_phase = dict(zip(accumulate(p.months for p in phases[:-1]), (p.name for p in phases[1:]), strict=True))
    months = 1
    while (day := add_months(enrolled_on, months)) < end:
        for _ in range(rng.randint(0, 2)):
            take(day, [decide_situation(case, ev.ContactRecorded(kind=rng.choice(CONTACT_KINDS)), day)])
        if months % programme.assessment_interval_months == 0:
            take(day, star(day, enrol=False))
        if months in next_phase and case.phases:  # a CTI course: ICM and ACT have no phases
            take(day, [decide_phase(case, programme, next_phase[months], "scheduled", day)])
        months += 1
    if rng.random() < 0.5:
        take(end, [decide_situation(case, ev.HousingChanged(situation="permanent"), end)])
    take(end, [decide_goal_change(case, "g1", rng.choice(("achieve", "drop")), None, end)])
    take(end, who5(end))
    reason = "completed" if end == planned_end else rng.choice(("dropped_out", "moved"))
    take(end, [decide_close(case, programme, reason, end)])
    return steps


def timeline(citizens: int, seed: int) -> Iterator[tuple[str, date, list[DomainEvent]]]:
    """Every citizen's steps, merged in date order (each citizen's own steps stay in their order)."""
    rng = random.Random(seed)
    defined = programmes()
    loaded = {pid: evolve_programme(None, pid, d) for pid, d in defined.items()}
    for pid, definition in defined.items():
        yield f"programme-{pid}", START, [definition]
    referral_days = sorted(rng.randrange(RECRUITMENT_DAYS - 31) for _ in range(citizens))
    pending: list[tuple[date, int, int, str, list[Step]]] = []
    again = random.Random(seed + 1)  # its own stream: the rest of the workload does not change with it
    referred: list[str] = []
    for citizen, offset in enumerate(referral_days):
        on = START + timedelta(days=offset)
        while pending and pending[0][0] <= on:
            yield from _pop(pending)
        case_id = f"case-{seed:04d}{citizen:028d}"
        # One referral in twenty is of a citizen referred before (by another partner, or again).
        citizen_id = (
            again.choice(referred) if referred and again.random() < REFERRED_AGAIN else f"citizen-{citizen:08d}"
        )
        referred.append(citizen_id)
        steps = course(case_id, citizen_id, loaded[rng.choice(sorted(loaded))], on, rng)
        heapq.heappush(pending, (steps[0][0], citizen, 0, case_id, steps))
    while pending:
        yield from _pop(pending)


def _pop(pending: list[tuple[date, int, int, str, list[Step]]]) -> Iterator[tuple[str, date, list[DomainEvent]]]:
    day, order, index, case_id, steps = heapq.heappop(pending)
    yield case_id, day, steps[index][1]
    if index + 1 < len(steps):
        heapq.heappush(pending, (steps[index + 1][0], order, index + 1, case_id, steps))


def generate(store: EventStore, citizens: int, seed: int = 1, per_call: int = 100) -> dict[int, int]:
    """Append the workload, up to ``per_call`` streams' steps in one atomic ``append_many`` (each with its
    expected version), so generating a million events takes minutes, not an hour.

    Returns, for each number of citizens referred so far, the log's head once they were: a benchmark can
    read "the log when it had 10,000 citizens" as a prefix of this one."""
    versions: dict[str, int] = {}
    heads: dict[int, int] = {}
    batch: dict[str, StreamWrite] = {}
    referred, appended = 0, store.head()  # nothing else writes meanwhile: positions follow on

    def flush() -> None:
        if batch:
            store.append_many(list(batch.values()))
            batch.clear()

    for stream_id, day, events in timeline(citizens, seed):
        if stream_id in batch or len(batch) == per_call:
            flush()
        at = start_of_day(day)
        version = versions.get(stream_id, 0)
        batch[stream_id] = StreamWrite(stream_id, [NewEvent(stream_id, e, at, "bench") for e in events], version)
        versions[stream_id] = version + len(events)
        appended += len(events)
        if isinstance(events[0], ev.ReferralReceived):
            referred += 1
            heads[referred] = appended
    flush()
    return heads


def machine() -> str:
    """Cores, processor and Python, for a result file: this VM's host changes (a Zen 5 EPYC one evening split the
    two projection lines' figures from the day before's), and ratios are only compared on the same kind."""
    cpu: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            cpu.setdefault(name.strip(), value.strip())
    kind = f"{cpu.get('model name', '?')}, family {cpu.get('cpu family', '?')} model {cpu.get('model', '?')}"
    return f"{os.cpu_count()} cores ({kind}), Python {sys.version.split()[0]}"


def drop(connection: redis.Redis, pattern: str) -> None:
    """Delete a benchmark's own keys, so the next run starts from nothing."""
    for key in connection.scan_iter(match=pattern, count=1000):
        connection.delete(key)


@contextmanager
def workload_log(citizens: int, seed: int = 1) -> Iterator[tuple[str, EventStore, dict[int, int], float]]:
    """A redis-server of its own holding the workload: its URL, the store, the log's head by citizens
    referred (see ``generate``) and the seconds generating took. The server stops on exit."""
    server, url = start_redis_server(Path(tempfile.mkdtemp()))
    try:
        store = event_store(redis.Redis.from_url(url), Settings.from_env({}))
        started = time.perf_counter()
        heads = generate(store, citizens, seed)
        yield url, store, heads, round(time.perf_counter() - started, 1)
    finally:
        server.terminate()
        server.wait()
