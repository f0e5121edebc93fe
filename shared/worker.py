"""Running RQ workers and the cron scheduler for the suite's queues."""

from __future__ import annotations

from typing import Any

from rq import get_current_job
from rq.cron import CronScheduler
from rq.worker import SimpleWorker

from shared.bootstrap import connect, event_store, projection_runner
from shared.config import Settings
from shared.durability import warn_if_not_durable
from shared.eventstore import EventStore
from shared.logs import configure_logging
from shared.nudges import SUBSCRIBERS, enqueue_sweeps, queue_name
from shared.projections import Projection, ProjectionRunner

SWEEP_INTERVAL_S = 30
OFFER_INTERVAL_S = 60
PHASE_INTERVAL_S = 3600


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


def run_worker(queue: str, service: str) -> None:
    """A worker on the suite's ``queue`` ("caseflow", "reporting") under the configured key prefix."""
    configure_logging(service)
    settings = Settings.from_env()
    connection = connect(settings)
    warn_if_not_durable(connection, service)
    enqueue_sweeps(connection, settings.key_prefix)  # catch up on anything appended while no worker ran
    worker = SuiteWorker([queue_name(settings.key_prefix, queue)], connection=connection)
    worker.work(with_scheduler=True)  # the scheduler moves retries that are due back to the queue


def run_scheduler() -> None:
    """RQ's cron scheduler: sweeps (a lost nudge waits at most one interval), waitlist offers, phase moves."""
    configure_logging("scheduler")
    settings = Settings.from_env()
    connection = connect(settings)
    caseflow = queue_name(settings.key_prefix, "caseflow")
    scheduler = CronScheduler(connection=connection)
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
