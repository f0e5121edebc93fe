"""Several worker processes at once, one killed mid-flight, give exactly the single-replay state."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import redis
from rq import Worker

from services.caseflow.projection import CaseflowProjection
from services.reporting.projection import ReportingProjection
from shared.bootstrap import event_store
from shared.config import Settings
from shared.nudges import enqueue_sweeps
from shared.projections import ProjectionRunner, replay
from tests.support import generate_log, snapshot, spawn_worker, stop_workers


def spawn(kind: str, url: str) -> subprocess.Popen[bytes]:
    return spawn_worker(kind, url, CASEFLOW_LEASE_TTL_MS="1500", CASEFLOW_BATCH_SIZE="50")


@pytest.mark.slow
def test_racing_and_killed_workers_equal_one_in_order_replay(real_connection: redis.Redis, real_redis_url: str) -> None:
    store = event_store(real_connection, Settings.from_env({}))
    workers = [spawn(kind, real_redis_url) for kind in ("caseflow", "caseflow", "reporting", "reporting")]
    try:
        appended = generate_log(store, cases=800, seed=3, nudge=True)
        workers[0].send_signal(signal.SIGKILL)  # mid-flight: jobs queued, maybe a batch half done
        workers.append(spawn("caseflow", real_redis_url))
        appended += generate_log(store, cases=800, seed=4, nudge=True)
        assert appended == store.head() >= 3000

        runners = [ProjectionRunner(store, p) for p in (CaseflowProjection(), ReportingProjection())]
        deadline = time.monotonic() + 120
        while not all(r.is_caught_up() for r in runners):
            assert time.monotonic() < deadline, "workers did not catch up within 120s"
            enqueue_sweeps(real_connection, "cf")  # what the scheduler does: covers nudges the killed worker took
            time.sleep(1)
        busy = [w for w in Worker.all(connection=real_connection) if w.successful_job_count > 0]
        assert len(busy) >= 3, "the live workers should all have taken part"
    finally:
        stop_workers(workers)

    for runner in runners:
        namespace = f"reference:{runner.projection.name}"
        assert replay(store, runner.projection, namespace) == appended
        assert snapshot(real_connection, runner.namespace) == snapshot(real_connection, namespace)
