"""Running RQ workers and the cron scheduler for the suite's queues."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import redis
from rq import Queue, get_current_job
from rq.cron import CronScheduler
from rq.worker import SimpleWorker

from shared.bootstrap import connect, event_store, projection_runner
from shared.config import DEVELOPMENT_SECRETS, Settings
from shared.durability import warn_if_not_durable
from shared.eventstore import EventStore
from shared.gc_tuning import make_full_collections_rare
from shared.logs import configure_logging
from shared.nudges import SUBSCRIBERS, enqueue_sweeps, queue_name
from shared.projections import Projection, ProjectionRunner

SWEEP_INTERVAL_S = 30
OFFER_INTERVAL_S = 60
PHASE_INTERVAL_S = 3600
# RQ keeps an idle worker's registration this long past its last heartbeat (+60 s), and an idle worker
# heartbeats every WORKER_TTL_S - 15 s: one that hangs drops out of the registry within two minutes (RQ's
# default, 420 s, would take eight), which is what ``caseflow-alive`` looks at. A busy worker's registration
# lasts its job's timeout and a minute.
WORKER_TTL_S = 60
# How long a worker's pubsub thread (RQ's, for stop and kill commands) sleeps waiting for a message: see
# ``SuiteWorker.subscribe``.
PUBSUB_WAKE_S = 1.0


class SuiteWorker(SimpleWorker):
    """An in-process RQ worker: nudge jobs are short and ours, so forking per job buys nothing.

    The embedded store (fakeredis over TCP) answers CLIENT INFO in a shape
    redis-py cannot parse; a worker's address is informational, so it is
    recorded as unknown rather than failing the worker.
    """

    def _set_ip_address(self, connection: Any) -> None:
        try:
            super()._set_ip_address(connection)
        except ValueError:
            self.ip_address = "unknown"

    def subscribe(self) -> None:
        """RQ's, its pubsub thread waking every second rather than every minute. RQ stops the thread by
        unsubscribing, whose reply wakes it, and then stopping it; a thread that reads the reply before it is
        stopped goes back to waiting for a subscription for the whole of its sleep, and redis-py 8's ``stop``
        waits for it: a worker's teardown took up to a minute (an in-process test worker's, in make test)."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]  # RQ types it as None alone
            sleep_time=PUBSUB_WAKE_S, daemon=True, exception_handler=self._pubsub_exception_handler
        )


def current_store() -> EventStore:
    job = get_current_job()
    if job is None:
        raise RuntimeError("caseflow jobs run inside an RQ worker")
    return event_store(job.connection, Settings.from_env())


def current_runner(projection: Projection) -> ProjectionRunner:
    """The runner for a job: built from the job's own connection, so tests and deployments agree."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("projection jobs run inside an RQ worker")
    return projection_runner(job.connection, Settings.from_env(), projection)


def suite_worker(connection: redis.Redis, prefix: str, queue: str) -> SuiteWorker:
    return SuiteWorker([queue_name(prefix, queue)], connection=connection, worker_ttl=WORKER_TTL_S)


def run_worker(queue: str, service: str) -> None:
    """A worker on the suite's ``queue`` ("caseflow", "reporting") under the configured key prefix."""
    configure_logging(service)
    make_full_collections_rare()  # a worker holds its partitions' folded documents from batch to batch
    settings = Settings.from_env()
    connection = connect(settings)
    warn_if_not_durable(connection, service)
    enqueue_sweeps(connection, settings.key_prefix)  # catch up on anything appended while no worker ran
    worker = suite_worker(connection, settings.key_prefix, queue)
    worker.work(with_scheduler=True)  # the scheduler moves retries that are due back to the queue


class _Scheduler(CronScheduler):
    """RQ's cron scheduler, stopped by the first stop signal only. RQ's handler raises StopRequested on every one,
    wherever the scheduler is, and a second one comes at once when a service manager signals the whole group and
    the suite its children as well: raised inside RQ's farewell it cut the deregistration short, and inside a log
    line being written, logging printed it as a traceback of its own."""

    _stopping = False

    def _request_stop(self, signum: int, frame: Any) -> None:
        if not self._stopping:
            self._stopping = True
            super()._request_stop(signum, frame)  # type: ignore[no-untyped-call]


def run_scheduler() -> None:
    """RQ's cron scheduler: sweeps (a lost nudge waits at most one interval), waitlist offers, phase moves."""
    configure_logging("scheduler")
    settings = Settings.from_env()
    connection = connect(settings)
    caseflow = queue_name(settings.key_prefix, "caseflow")
    scheduler = _Scheduler(connection=connection)
    scheduler.register(
        _import("services.caseflow.jobs.offer_free_slots_everywhere"),
        caseflow,
        interval=OFFER_INTERVAL_S,
        name="offer-free-slots",
    )
    scheduler.register(
        _import("services.caseflow.jobs.emit_due_phase_moves"),
        caseflow,
        interval=PHASE_INTERVAL_S,
        name="phase-moves",
    )
    for subscriber in SUBSCRIBERS:
        scheduler.register(
            _import(subscriber.sweep_job),
            queue_name(settings.key_prefix, subscriber.queue),
            interval=SWEEP_INTERVAL_S,
            name=f"sweep-{subscriber.projection}",
        )
    scheduler.start()  # type: ignore[no-untyped-call]


def _import(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)


def alive_here(connection: redis.Redis, prefix: str, role: str, hostname: str | None = None) -> bool:
    """Whether this host (a container) runs a live ``role``: a "caseflow" or "reporting" worker, or the
    "scheduler". Alive is registered with RQ: a registration lapses when its heartbeats stop, and a process
    that stops cleanly removes its own."""
    hostname = hostname or socket.gethostname()
    if role == "scheduler":
        return any(s.hostname == hostname for s in CronScheduler.all(connection, cleanup=False))
    workers = SuiteWorker.all(queue=Queue(queue_name(prefix, role), connection=connection))
    return any(w.hostname == hostname for w in workers)


ROLES = ("caseflow", "reporting", "scheduler")


def alive_main(argv: list[str] | None = None) -> int:
    """``caseflow-alive caseflow|reporting|scheduler``: exit 0 if this host's process of that role is alive
    (a container healthcheck), 1 with a line saying why not."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in ROLES:
        print(f"usage: caseflow-alive {'|'.join(ROLES)}", file=sys.stderr)
        return 2
    try:
        # The check seals nothing and pseudonymises nothing: it needs Redis, not the deployment's secrets.
        settings = Settings.from_env({**DEVELOPMENT_SECRETS, **os.environ})
        connection = connect(settings)
    except (RuntimeError, ValueError) as e:
        print(f"configuration: {e}", file=sys.stderr)
        return 1
    try:
        alive = alive_here(connection, settings.key_prefix, args[0])
    except redis.RedisError as e:
        print(f"cannot ask Redis: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if not alive:
        print(f"no live {args[0]} process registered from {socket.gethostname()}", file=sys.stderr)
    return 0 if alive else 1
