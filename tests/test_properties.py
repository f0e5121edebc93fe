"""Property tests (hypothesis): any sequence of commands is refused with a reason or leaves a valid state;
projections are deterministic."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import fakeredis
import orjson
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shared.domain import events as ev
from shared.domain.case import (
    Case,
    CaseStatus,
    Invalid,
    Refused,
    decide_add_goal,
    decide_close,
    decide_decline,
    decide_goal_change,
    decide_phase,
    decide_purpose,
    decide_refer_on,
    decide_situation,
    decide_star,
    decide_start_assessment,
    decide_who5,
    decide_withdraw,
    evolve,
)
from shared.domain.caseload import Caseload, decide_assignment, decide_offers, decide_release, evolve_caseload
from shared.domain.programme import evolve_programme
from shared.events import DomainEvent
from tests.test_course_rules import programme

PROGRAMME = programme(ev.WorkerJoined("anna", "cti", capacity=2), ev.WorkerJoined("bo", "cti", capacity=1))
COMMANDS = [
    "assess",
    "decline",
    "withdraw",
    "refer_on",
    "enrol",
    "star",
    "who5",
    "purpose",
    "goal",
    "achieve",
    "contact",
    "housing",
    "phase",
    "close",
]
# Weighted so that sequences reach enrolment, phase moves and closure, not only early refusals.
WEIGHTED = [*COMMANDS, *["assess", "enrol", "star", "phase", "goal", "achieve"] * 3]


def decide(case: Case, command: str, on: date, n: int) -> list[DomainEvent]:
    p = PROGRAMME
    match command:
        case "assess":
            return [decide_start_assessment(case, on)]
        case "decline":
            return [decide_decline(case, "r", on)]
        case "withdraw":
            return [decide_withdraw(case, "r", on)]
        case "refer_on":
            return [decide_refer_on(case, "x", on)]
        case "enrol" | "star":
            return decide_star(case, p, {"housing": 1 + n % 10, "finances": 1 + n % 13}, on, None, command == "enrol")
        case "who5":
            return [decide_who5(case, tuple((n + i) % 7 for i in range(5)), on)]
        case "purpose":
            return [decide_purpose(case, p, ("exit_prostitution", "improve_life_situation", "nope")[n % 3], on)]
        case "goal":
            return [decide_add_goal(case, p, f"g{n % 3}", "housing", "d", on)]
        case "achieve":
            return [decide_goal_change(case, f"g{n % 3}", ("update", "achieve", "drop")[n % 3], "d", on)]
        case "contact":
            return [decide_situation(case, ev.ContactRecorded(kind="phone"), on)]
        case "housing":
            return [decide_situation(case, ev.HousingChanged(situation="permanent"), on)]
        case "phase":
            return [decide_phase(case, p, ("phase_1", "phase_2", "phase_3", "phase_9")[n % 4], "r", on)]
        case "close":
            return [decide_close(case, PROGRAMME, "completed", on)]
    raise AssertionError(command)


def check(case: Case) -> None:
    assert case.status is case.history[-1].status
    assert [c.on for c in case.history] == sorted(c.on for c in case.history)
    assert case.status_on(date.max) is case.status
    assert (case.enrolled_on is not None) == bool(case.phases) == bool(case.stars)
    if case.status in (CaseStatus.ENROLLED, CaseStatus.CLOSED):
        assert case.enrolled_on is not None and case.method == "cti"
    if case.status is CaseStatus.CLOSED:
        assert case.closed_on is not None and case.closed_on >= case.enrolled_on  # type: ignore[operator]
    assert all(c.on >= case.referred_on for c in case.history)
    assert Case.from_stored(orjson.loads(orjson.dumps(case))) == case


@settings(max_examples=300, deadline=None)
@given(
    st.booleans(),
    st.lists(st.tuples(st.sampled_from(WEIGHTED), st.integers(0, 12), st.integers(0, 99)), max_size=40),
)
def test_any_command_sequence_is_refused_or_leaves_a_valid_case(
    course: bool, steps: list[tuple[str, int, int]]
) -> None:
    if course:  # half the sequences start a course, so enrolled, moved and closed courses are explored too
        steps = [("assess", 3, 0), ("enrol", 5, 0), *steps]
    on = date(2016, 1, 1)
    case = evolve(None, "case-p", ev.ReferralReceived("cph", "reden", True), on)
    applied = 1
    for command, days, n in steps:
        on += timedelta(days=days)
        try:
            events = decide(case, command, on, n)
        except (Refused, Invalid) as refusal:
            assert getattr(refusal, "code", None) or getattr(refusal, "fields", None)  # always says why
            continue
        for event in events:
            case = evolve(case, "case-p", event, on)
            applied += 1
        assert case.version == applied
        check(case)
        if not case.status.is_open:  # terminal: nothing more is accepted
            for command in COMMANDS:
                try:
                    decide(case, command, on + timedelta(days=1), n)
                    raise AssertionError(f"{command} accepted on a {case.status} case")
                except (Refused, Invalid):
                    pass


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["assign", "wait", "release", "offer"]), st.integers(0, 5), st.sampled_from(["anna", "bo"])
        ),
        max_size=40,
    )
)
def test_caseloads_are_never_over_capacity_and_nobody_is_lost(steps: list[tuple[str, int, str]]) -> None:
    base = evolve(None, "case-0", ev.ReferralReceived("cph", "reden", True), date(2016, 1, 1))
    base = evolve(base, "case-0", ev.AssessmentStarted(), date(2016, 1, 2))
    caseload = Caseload("cph")
    for command, n, worker in steps:
        case = replace(base, case_id=f"case-{n}")
        try:
            if command == "assign" or command == "wait":
                events = decide_assignment(caseload, PROGRAMME, case, worker, command == "wait", date(2016, 2, 1))
            elif command == "release":
                events = decide_release(caseload, case.case_id, "course_closed", date(2016, 2, 1))
            else:
                events = decide_offers(caseload, PROGRAMME, {}, date(2016, 2, 1))
        except (Refused, Invalid):
            continue
        for event in events:
            caseload = evolve_caseload(caseload, event, date(2016, 2, 1))
        for w in PROGRAMME.workers:
            assert caseload.load(w) <= PROGRAMME.capacity_of(w)
        waiting = [c for c, _ in caseload.waitlist]
        assert len(waiting) == len(set(waiting)) and not set(waiting) & set(caseload.assignments)
    after_offers = caseload
    for event in decide_offers(caseload, PROGRAMME, {}, date(2016, 3, 1)):
        after_offers = evolve_caseload(after_offers, event, date(2016, 3, 1))
    free = sum(PROGRAMME.capacity_of(w) - after_offers.load(w) for w in PROGRAMME.workers)
    assert free == 0 or not after_offers.waitlist  # offers leave no one waiting beside a free slot


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["cti", "icm"]), st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=4),
    st.lists(st.tuples(st.sampled_from([None, "cti", "icm"]), st.sampled_from([None, "cti", "icm"])), max_size=8),
)
def test_offers_place_as_many_waiting_citizens_as_the_free_slots_allow_each_in_a_slot_of_its_method(
    workers: list[tuple[str, int, int]], waiting: list[tuple[str | None, str | None]]
) -> None:
    """Workers of two methods, each with a capacity and some citizens already; a waitlist of enrolled courses (of
    a method) and citizens not yet enrolled (None), each waitlisted for a worker of a method (or, as in v1
    waitlistings, for none): a course waits for its enrolled method, else for the one it was waitlisted for,
    else for any. Every offer suits its citizen, nobody goes over capacity,
    nobody is left waiting beside a free slot that suits them, as many are placed as any choice could place, and
    nobody is passed over but to place someone who waited longer."""
    p = programme()
    p = dataclasses.replace(p, methods=("cti", "icm"), caseload_limit=3)
    caseload = Caseload("cph")
    for index, (method, capacity, load) in enumerate(workers):
        worker_id = f"w{index}"
        p = evolve_programme(p, "cph", ev.WorkerJoined(worker_id, method, capacity))
        for n in range(min(load, capacity)):
            caseload = evolve_caseload(
                caseload, ev.CaseAssigned(f"busy-{index}-{n}", worker_id, "request"), date(2016, 1, 5)
            )
    methods = {f"wait-{n}": enrolled for n, (enrolled, _) in enumerate(waiting)}
    asked = {f"wait-{n}": method for n, (_, method) in enumerate(waiting)}
    wanted = {case_id: methods[case_id] or asked[case_id] for case_id in methods}
    for n, case_id in enumerate(methods):
        waitlisted = ev.CaseWaitlisted(case_id, asked[case_id])
        caseload = evolve_caseload(caseload, waitlisted, date(2016, 1, 10) + timedelta(days=n))
    free = {w: p.capacity_of(w) - caseload.load(w) for w in p.workers}
    offers = decide_offers(caseload, p, methods, date(2016, 2, 1))
    for offer in offers:
        assert isinstance(offer, ev.CaseAssigned)
        assert wanted[offer.case_id] in (None, p.workers[offer.worker_id].method)
        caseload = evolve_caseload(caseload, offer, date(2016, 2, 1))
    assert all(caseload.load(w) <= p.capacity_of(w) for w in p.workers)
    left = {w: p.capacity_of(w) - caseload.load(w) for w in p.workers}
    for case_id, _ in caseload.waitlist:
        assert not any(n > 0 and wanted[case_id] in (None, p.workers[w].method) for w, n in left.items())
    per_method = {m: sum(n for w, n in free.items() if p.workers[w].method == m) for m in ("cti", "icm")}
    bound = {m: sum(1 for method in wanted.values() if method == m) for m in ("cti", "icm")}
    spare = sum(max(per_method[m] - bound[m], 0) for m in per_method)
    best = sum(min(per_method[m], bound[m]) for m in per_method) + min(list(wanted.values()).count(None), spare)
    assert len(offers) == best

    def placeable(cases: list[str]) -> bool:  # Hall's condition: each method's courses fit its slots, all fit all
        needs = [wanted[c] for c in cases]
        return len(cases) <= sum(per_method.values()) and all(needs.count(m) <= per_method[m] for m in per_method)

    placed = [offer.case_id for offer in offers if isinstance(offer, ev.CaseAssigned)]
    queue = [f"wait-{n}" for n in range(len(waiting))]  # longest waiting first
    for index, passed_over in enumerate(queue):
        if passed_over not in placed:  # only in the stead of someone who waited longer
            assert not placeable([c for c in queue[:index] if c in placed] + [passed_over])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(5, 40))
def test_projections_are_deterministic(seed: int, cases: int) -> None:
    from services.caseflow.projection import CaseflowProjection
    from services.reporting.projection import ReportingProjection
    from shared.bootstrap import event_store
    from shared.config import Settings
    from shared.projections import replay
    from tests.support import generate_log, snapshot

    connection: Any = fakeredis.FakeRedis()
    store = event_store(connection, Settings.from_env({}))
    generate_log(store, cases=cases, seed=seed)
    for projection in (CaseflowProjection(), ReportingProjection()):
        replay(store, projection, "one")
        replay(store, projection, "two", batch_size=7)
        assert snapshot(connection, "one") == snapshot(connection, "two")
        for key in connection.scan_iter("one:*"):
            connection.delete(key)
        for key in connection.scan_iter("two:*"):
            connection.delete(key)


def reported_and_folded(cases: int, seed: int, citizens: int = 0) -> tuple[Any, dict[str, Case]]:
    """A random log (``generate_log``) projected into the reporting read model, and every case in it folded by
    the domain's own ``evolve``: what the read model's answers are checked against."""
    from services.reporting.projection import ReportingProjection
    from shared.bootstrap import event_store
    from shared.config import Settings
    from shared.projections import rebuild
    from tests.support import generate_log

    store = event_store(fakeredis.FakeRedis(), Settings.from_env({}))
    generate_log(store, cases=cases, seed=seed, citizens=citizens)
    rebuild(store, [ReportingProjection()], "cf")
    folded: dict[str, Case] = {}
    for partition in range(store.partitions):
        for event in store.read_partition(partition, 0, 100_000):
            folded[event.stream_id] = evolve(
                folded.get(event.stream_id), event.stream_id, event.payload, event.occurred_on
            )
    return store, folded


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(10, 60), st.lists(st.integers(0, 330), min_size=1, max_size=4))
def test_the_status_of_citizens_counts_each_once_by_their_most_telling_referral(
    seed: int, cases: int, days: list[int]
) -> None:
    """Against the domain's own fold of every case in the log: each citizen (several referrals in different
    partitions) counted once, an open referral before an ended one, the most engaged open one, else the one that
    ended last; and the counts add up to the distinct citizens."""
    from services.reporting.queries import STATUSES, Reports

    store, folded = reported_and_folded(cases, seed)
    connection = store.redis
    engagement = [CaseStatus.ENROLLED, CaseStatus.IN_ASSESSMENT, CaseStatus.REFERRED]
    reports = Reports(connection, "cf", store)
    for offset in days:
        day = date(2016, 1, 1) + timedelta(days=offset)
        people: dict[str, list[tuple[date, str, CaseStatus]]] = {}
        for case in folded.values():
            moves = [change for change in case.history if change.on <= day]
            if case.programme_id == "demo-cph" and moves:
                people.setdefault(case.citizen_id, []).append((moves[-1].on, case.case_id, moves[-1].status))
        expected = dict.fromkeys(STATUSES, 0)
        for statuses in people.values():
            open_ = sorted((engagement.index(s), s) for _, _, s in statuses if s.is_open)
            expected[(open_[0][1] if open_ else max(statuses)[2]).value] += 1  # else the latest ended
        report = reports.status_on("demo-cph", day)
        assert report["citizens"] == expected
        assert sum(expected.values()) == report["distinct_citizens"] == len(people)
        assert sum(report["counts"].values()) == sum(len(s) for s in people.values())


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(100, 150), st.lists(st.integers(0, 400), min_size=1, max_size=3))
def test_the_success_criteria_count_each_citizen_once_over_their_courses(
    seed: int, cases: int, days: list[int]
) -> None:
    """Against the domain's own fold of every case in the log (courses of one citizen in different partitions,
    enrolled, housed, at the job centre, closed): the success criteria's numerators and denominators are each
    citizen counted once over all their courses, for all courses, a partner's and a method's."""
    from collections import Counter

    from services.reporting.criteria import citizen_on
    from services.reporting.projection import families
    from services.reporting.queries import SUCCESS_CRITERIA, Reports

    store, folded = reported_and_folded(cases, seed, citizens=cases // 6)  # several courses of one citizen
    connection = store.redis

    def course(case: Case) -> dict[str, Any]:
        def dated(records: tuple[tuple[date, Any], ...]) -> list[list[Any]]:
            return [[on.isoformat(), value] for on, value in records]

        return {
            "enrolled_on": case.enrolled_on.isoformat() if case.enrolled_on else None,
            "closed_on": case.closed_on.isoformat() if case.closed_on else None,
            "method": case.method,
            "age_band": case.age_band,
            "housing": dated(case.housing),
            "treatment": dated(case.addiction_treatment),
            "jobcentre": dated(case.job_centre),
        }

    reports = Reports(connection, "cf", store)
    enrolled = [c for c in folded.values() if c.programme_id == "demo-cph" and c.enrolled_on]
    assume(len({c.citizen_id for c in enrolled}) < len(enrolled))  # a citizen with two courses (1 log in 30 has none)
    partners = sorted({c.source for c in enrolled})
    for partner, method in [(None, None), *((p, None) for p in partners), (None, "cti"), (None, "icm")]:
        family = f"partner:{partner}" if partner else f"method:{method}" if method else "all"
        people: dict[str, list[dict[str, Any]]] = {}
        for case in enrolled:
            doc = course(case)
            if family in families(doc | {"source": case.source}):
                people.setdefault(case.citizen_id, []).append(doc)
        for offset in days:
            day = date(2016, 1, 1) + timedelta(days=offset)
            expected = Counter[str]()
            for courses in people.values():
                expected.update(citizen_on(courses, day.isoformat()))
            report = reports.success_criteria("demo-cph", day, partner, method)
            for row, (_, _, numerator, denominator, _) in zip(report["criteria"], SUCCESS_CRITERIA, strict=True):
                assert (row["numerator"], row["denominator"]) == (expected[numerator], expected[denominator])
