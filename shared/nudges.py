"""RQ jobs as nudges: "partition P of projection X has new events". The log is what is processed.

A nudge carries only a partition number, never personal data. A flag per
partition suppresses duplicate nudges while one is queued: the job clears the
flag before it reads the log, so an append after that enqueues a fresh nudge.
Lost nudges (a crash between append and enqueue) are caught by the periodic
sweep, so no event waits forever.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis
from rq import Queue, Retry

from shared.config import Settings
from shared.eventstore import partition_of
from shared.keys import ProjectionKeys

NUDGE_FLAG_TTL_S = 60


def retry_policy() -> Retry:
    """Bounded retries with backoff for every job; what still fails lands in RQ's failed registry."""
    intervals = list(Settings.from_env().retry_intervals) or [0]
    return Retry(max=len(intervals), interval=intervals)


def queue_name(prefix: str, queue: str) -> str:
    """The RQ queue of this suite's ``queue`` ("caseflow", "reporting"). RQ keeps its own keys (``rq:queue:<name>``,
    its registries) outside the suite's key prefix, so the name carries the prefix: two suites on one Redis (a
    test and a production prefix, two programmes' operators) would otherwise take each other's jobs, each worker
    catching up its own log on the other's nudge while the other's read models waited for the sweep."""
    return f"{prefix}.{queue}"


@dataclass(frozen=True)
class Subscriber:
    """A projection kind that follows the log, and the queue its workers listen on."""

    projection: str
    queue: str  # within the suite: the RQ queue's name is ``queue_name(prefix, queue)``
    catch_up_job: str  # dotted path, so intake needs none of the worker's code
    sweep_job: str


SUBSCRIBERS = (
    Subscriber("caseflow", "caseflow", "services.caseflow.jobs.catch_up", "services.caseflow.jobs.sweep"),
    Subscriber("reporting", "reporting", "services.reporting.jobs.catch_up", "services.reporting.jobs.sweep"),
)


def nudge_partition(
    connection: redis.Redis,
    prefix: str,
    subscriber: Subscriber,
    partition: int,
    request_id: str | None = None,
) -> bool:
    """Enqueue a catch-up job unless one is already waiting. Returns whether one was enqueued."""
    flag = ProjectionKeys(prefix, subscriber.projection).nudge_pending(partition)
    if not connection.set(flag, 1, nx=True, ex=NUDGE_FLAG_TTL_S):
        return False
    _enqueue(connection, prefix, subscriber, partition, request_id)
    return True


def nudge_flags(prefix: str, partitions: int, stream_ids: Iterable[str]) -> dict[str, tuple[Subscriber, int]]:
    """The flag of every projection for the partitions of these streams, with what each flag stands for."""
    return {
        ProjectionKeys(prefix, subscriber.projection).nudge_pending(partition): (subscriber, partition)
        for partition in dict.fromkeys(partition_of(stream, partitions) for stream in stream_ids)
        for subscriber in SUBSCRIBERS
    }


def enqueue_nudges(
    connection: redis.Redis, prefix: str, flagged: Iterable[tuple[Subscriber, int]], request_id: str | None = None
) -> None:
    """A catch-up job for each flag just set (an append sets the flags with its events: ``EventStore.append_many``)."""
    for subscriber, partition in flagged:
        _enqueue(connection, prefix, subscriber, partition, request_id)


def nudge_streams(
    connection: redis.Redis, prefix: str, partitions: int, stream_ids: Iterable[str], request_id: str | None = None
) -> None:
    """Nudge every projection for the partitions of streams written without the flags (one round trip; under
    load they are nearly always set already), a job per flag set now."""
    flags = nudge_flags(prefix, partitions, stream_ids)
    pipe = connection.pipeline(transaction=False)
    for flag in flags:
        pipe.set(flag, 1, nx=True, ex=NUDGE_FLAG_TTL_S)
    enqueue_nudges(
        connection,
        prefix,
        [flags[f] for f, newly_set in zip(flags, pipe.execute(), strict=True) if newly_set],
        request_id,
    )


def _enqueue(
    connection: redis.Redis, prefix: str, subscriber: Subscriber, partition: int, request_id: str | None
) -> None:
    Queue(queue_name(prefix, subscriber.queue), connection=connection).enqueue(
        subscriber.catch_up_job,
        partition,
        meta={"request_id": request_id} if request_id else {},
        description=f"catch up partition {partition}",
        retry=retry_policy(),
    )


def suite_queues(prefix: str) -> list[str]:
    """The RQ queues of the suite under this key prefix."""
    return sorted({queue_name(prefix, s.queue) for s in SUBSCRIBERS})


def queue_health(connection: redis.Redis, prefix: str) -> dict[str, dict[str, int]]:
    """Each queue's waiting and failed jobs: failures are kept in RQ's failed registry until re-run."""
    from rq.registry import FailedJobRegistry

    health = {}
    for name in suite_queues(prefix):
        queue = Queue(name, connection=connection)
        health[name] = {"queued": queue.count, "failed": FailedJobRegistry(queue=queue).count}
    return health


def requeue_failed(connection: redis.Redis, prefix: str) -> int:
    """Put every failed job of the suite back in its queue (after the cause is fixed). Returns how many."""
    from rq.registry import FailedJobRegistry

    requeued = 0
    for name in suite_queues(prefix):
        registry = FailedJobRegistry(queue=Queue(name, connection=connection))
        for job_id in registry.get_job_ids():
            registry.requeue(job_id)
            requeued += 1
    return requeued


def enqueue_sweeps(connection: redis.Redis, prefix: str) -> None:
    """Ask every projection kind to check all partitions (periodically, and at start-up)."""
    for subscriber in SUBSCRIBERS:
        Queue(queue_name(prefix, subscriber.queue), connection=connection).enqueue(
            subscriber.sweep_job, description="sweep", retry=retry_policy()
        )


OFFER_JOB = "services.caseflow.jobs.offer_free_slots"


def enqueue_offers(connection: redis.Redis, prefix: str, programme_id: str) -> None:
    """A slot may have freed (or capacity grown): let a caseflow worker offer it to the waitlist."""
    Queue(queue_name(prefix, "caseflow"), connection=connection).enqueue(
        OFFER_JOB, programme_id, description="offer free slots", retry=retry_policy()
    )
