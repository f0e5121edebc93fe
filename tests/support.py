"""Helpers shared by the tests: a realistic log generator, real RQ workers, read-model snapshots."""

from __future__ import annotations

import base64
import hashlib
import random
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any, cast

import redis
from rq import Queue

from shared.config import Settings
from shared.domain.access import hash_secret, partner_stream
from shared.domain.case import (
    CLOSE_REASONS,
    HOUSING_SITUATIONS,
    JOB_CENTRE_CATEGORIES,
    Case,
    CaseStatus,
    Refused,
    decide_decline,
    decide_start_assessment,
    decide_withdraw,
    evolve,
)
from shared.domain.events import (
    AddictionTreatmentChanged,
    ApiKeyIssued,
    CitizenEnrolled,
    CourseClosed,
    HousingChanged,
    JobCentreCategoryChanged,
    PartnerRegistered,
    ReferralReceived,
)
from shared.events import DomainEvent, NewEvent
from shared.events.envelope import start_of_day
from shared.eventstore import EventStore
from shared.nudges import nudge_streams, queue_name
from shared.worker import SuiteWorker

PARTNERS = ("reden", "livarehab", "kk-socialforvaltning", "self")

# name: (partner, role, programme, worker). Granted by appending the events the admin command appends.
KEYS = {
    "reden": ("reden", "referrer", None, None),
    "livarehab": ("livarehab", "referrer", None, None),
    "kk-referrer": ("kk-socialforvaltning", "referrer", None, None),  # the municipality refers too
    "reden-other": ("reden", "referrer", "other-programme", None),  # a Reden key issued for another programme
    "coordinator": ("kk-socialforvaltning", "coordinator", "demo-cph", None),
    "other-coordinator": ("kk-socialforvaltning", "coordinator", "other-programme", None),
    "anna": ("kk-socialforvaltning", "worker", "demo-cph", "anna"),
    "bo": ("kk-socialforvaltning", "worker", "demo-cph", "bo"),
    "evaluator": ("vive", "evaluator", None, None),
    "evaluator-other": ("vive", "evaluator", "other-programme", None),
    "admin": ("kk-socialforvaltning", "admin", None, None),
}


def _key_parts(name: str) -> tuple[str, str, str]:
    partner = KEYS[name][0]
    key_id = hashlib.sha256(name.encode()).hexdigest()[:16]
    secret = base64.urlsafe_b64encode(hashlib.sha256(f"secret:{name}".encode()).digest()).decode().rstrip("=")
    return partner, key_id, secret


def auth(name: str) -> dict[str, str]:
    partner, key_id, secret = _key_parts(name)
    return {"Authorization": f"Bearer cfk.{partner}.{key_id}.{secret}"}


def grant_test_keys(store: EventStore) -> None:
    for name, (partner, role, programme, worker) in KEYS.items():
        _, key_id, secret = _key_parts(name)
        stream = partner_stream(partner)
        if store.stream_version(stream) == 0:
            store.append(stream, [_new(stream, PartnerRegistered(partner, "ngo"))], expected_version=0)
        issued = ApiKeyIssued(key_id, hash_secret(secret), role, programme, worker, f"test key {name}")
        store.append(stream, [_new(stream, issued)])
        nudge_streams(store.redis, "cf", store.partitions, [stream])  # as the admin command's append does


@contextmanager
def counting_round_trips() -> Iterator[list[str]]:
    """Every round trip to Redis made inside, by what it wrote to a connection: a command alone by its name, several
    written at once as ``pipeline:NAME,NAME``, on either backend and by whatever path (redis-py's commands and
    pipelines, ``shared.redis_values.round_trip``). What a new connection says to introduce itself is left out."""
    sent: list[str] = []
    send: Callable[..., None] = redis.connection.AbstractConnection.send_packed_command  # unannotated in redis-py

    def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
        names = [name for name in _command_names(command) if name != "CLIENT SETINFO"]
        if names:
            sent.append(names[0] if len(names) == 1 else "pipeline:" + ",".join(names))
        send(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        redis.connection.AbstractConnection.send_packed_command = send  # type: ignore[method-assign]


def _command_names(packed: bytes | list[bytes]) -> list[str]:
    """The names of the commands in a write (RESP arrays of bulk strings; ``CLIENT SETINFO`` by its first two)."""
    data = b"".join(bytes(chunk) for chunk in packed) if isinstance(packed, list) else bytes(packed)
    names, at = [], 0
    while at < len(data):
        end = data.index(b"\r\n", at)
        count, at = int(data[at + 1 : end]), end + 2
        args = []
        for _ in range(count):
            end = data.index(b"\r\n", at)
            size, at = int(data[at + 1 : end]), end + 2
            args.append(data[at : at + size])
            at += size + 2
        names.append("CLIENT SETINFO" if args[:2] == [b"CLIENT", b"SETINFO"] else args[0].decode().upper())
    return names


def _new(stream: str, payload: DomainEvent) -> NewEvent:
    return NewEvent(stream, payload, start_of_day(date(2016, 1, 1)), "test-admin")


INTERNAL = (":checkpoint:", ":lease:", ":nudge-pending:")


def suite_queue(connection: redis.Redis, queue: str) -> Queue:
    """The suite's RQ queue ("caseflow", "reporting") under the key prefix of the tests' processes."""
    return Queue(queue_name(Settings.from_env().key_prefix, queue), connection=connection)


def run_workers(connection: redis.Redis, *queues: str) -> None:
    """Real RQ workers, in-process, in burst mode: they run every queued job, then return."""
    names = [suite_queue(connection, q).name for q in queues or ("caseflow", "reporting")]
    SuiteWorker(names, connection=connection).work(burst=True)


def generate_log(
    store: EventStore, cases: int, seed: int = 1, nudge: bool = False, prefix: str = "cf", citizens: int = 0
) -> int:
    """Append plausible lifecycles, interleaved across cases, of ``citizens`` citizens (default: two thirds of the
    cases, so some are referred more than once). Returns how many events were appended."""
    rng = random.Random(seed)

    open_cases: dict[str, Any] = {}
    last_on: dict[str, date] = {}
    appended = 0
    start = date(2016, 1, 1)
    for i in range(cases):
        case_id = f"case-{seed:04d}{i:028d}"
        on = start + timedelta(days=i % 300)
        payload: DomainEvent = ReferralReceived(
            programme_id=rng.choice(("demo-cph", "demo-ballerup")),
            source=rng.choice(PARTNERS),
            consent_given=True,
            # Some citizens are referred more than once, their referrals in different partitions.
            citizen_id=f"citizen-{seed:04d}-{rng.randrange(max(1, citizens or cases * 2 // 3))}",
            age_band=rng.choice((None, "under_18", "18_24")),
        )
        last_on[case_id] = on
        appended += _append(store, case_id, payload, on, 0, nudge, prefix)
        open_cases[case_id] = evolve(None, case_id, payload, on)
        # Interleave: now and then move a random open case on.
        for _ in range(rng.randint(0, 3)):
            if not open_cases:
                break
            other = rng.choice(sorted(open_cases))
            case = open_cases[other]
            later = last_on[other] + timedelta(days=rng.randint(0, 20))  # a case's records are in date order
            if case.status is CaseStatus.ENROLLED or (case.status is CaseStatus.IN_ASSESSMENT and rng.random() < 0.7):
                event = _course_event(rng, case)
            else:
                [decide] = rng.choices(
                    (
                        lambda c, d: decide_start_assessment(c, d),
                        lambda c, d: decide_decline(c, "outside target group", d),
                        lambda c, d: decide_withdraw(c, "citizen moved", d),
                    ),
                    weights=(3, 1, 1),
                )
                try:
                    event = decide(case, later)
                except Refused:
                    continue
            appended += _append(store, other, event, later, case.version, nudge, prefix)
            last_on[other] = later
            case = evolve(case, other, event, later)
            if case.status.is_open:
                open_cases[other] = case
            else:
                del open_cases[other]
    return appended


def _course_event(rng: random.Random, case: Case) -> DomainEvent:
    """An enrolment, then what the success criteria read (housing, treatment, the job centre), then a closure.
    Appended without the programme's rules (``decide``): what reporting folds, not what intake would accept."""
    if case.status is CaseStatus.IN_ASSESSMENT:
        method = rng.choice(("cti", "icm"))
        return CitizenEnrolled(method, "phase_1" if method == "cti" else None)
    return rng.choice(
        (
            lambda: HousingChanged(rng.choice(HOUSING_SITUATIONS)),
            lambda: AddictionTreatmentChanged(rng.random() < 0.5),
            lambda: JobCentreCategoryChanged(rng.choice(JOB_CENTRE_CATEGORIES)),
            lambda: CourseClosed(rng.choice(CLOSE_REASONS)),
        )
    )()


def _append(
    store: EventStore, case_id: str, payload: DomainEvent, on: date, version: int, nudge: bool, prefix: str
) -> int:
    store.append(case_id, [NewEvent(case_id, payload, start_of_day(on), "test")], expected_version=version)
    if nudge:
        nudge_streams(store.redis, prefix, store.partitions, [case_id])
    return 1


def snapshot(connection: redis.Redis, namespace: str) -> dict[str, Any]:
    """Every read-model key under a namespace with its value, minus the runner's own bookkeeping."""
    result: dict[str, Any] = {}
    for raw_key in connection.scan_iter(match=f"{namespace}:*", count=1000):
        key = raw_key.decode()
        if any(marker in key for marker in INTERNAL):
            continue
        kind = cast(bytes, connection.type(raw_key)).decode()
        suffix = key[len(namespace) :]
        if kind == "string":
            result[suffix] = connection.get(raw_key)
        elif kind == "hash":
            result[suffix] = connection.hgetall(raw_key)
        elif kind == "set":
            result[suffix] = connection.smembers(raw_key)
        elif kind == "zset":
            result[suffix] = connection.zrange(raw_key, 0, -1, withscores=True)
        else:
            raise AssertionError(f"unexpected {kind} at {key}")
    return result


def stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    """RQ's shutdown: SIGTERM asks for a warm stop (finish the job), a second SIGTERM forces it; SIGKILL last."""
    for attempt in ("warm", "cold"):
        for p in processes:
            if p.poll() is None:
                p.terminate()
        for p in processes:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                if attempt == "cold":
                    p.kill()
                    p.wait(timeout=10)


def flaky_catch_up(partition: int, failures: int) -> int:
    """A catch-up job that fails its first ``failures`` runs: a transient fault (RQ job, for the retry tests)."""
    from rq import get_current_job

    from services.caseflow.jobs import catch_up

    job = get_current_job()
    assert job is not None
    if int(job.connection.incr("test:flaky-runs")) <= failures:
        raise RuntimeError("transient fault")
    return catch_up(partition)


def catch_up_unless_broken(partition: int) -> int:
    """Fails while ``test:broken`` is set: a fault that lasts until someone fixes it."""
    from rq import get_current_job

    from services.caseflow.jobs import catch_up

    job = get_current_job()
    assert job is not None
    if job.connection.exists("test:broken"):
        raise RuntimeError("still broken")
    return catch_up(partition)


WORKER_ENTRY_POINTS = {
    "caseflow": "from services.caseflow.worker import main; main()",
    "reporting": "from services.reporting.worker import main; main()",
}


def spawn_worker(kind: str, url: str, **env: str) -> subprocess.Popen[bytes]:
    """A real worker process (the console script's entry point) on the Redis at ``url``."""
    import os
    import sys

    environment = {**os.environ, "REDIS_URL": url, **env}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER_ENTRY_POINTS[kind]],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def gc_thresholds() -> tuple[int, int, int]:
    """A job that answers with the garbage collector's thresholds of the worker process running it."""
    import gc

    return gc.get_threshold()
