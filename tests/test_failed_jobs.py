"""Failing jobs: retried with a bound, then kept in RQ's failed registry, reported, re-runnable; no event lost."""

from __future__ import annotations

import pytest
import redis
from flask.testing import FlaskClient
from rq.registry import FailedJobRegistry

from services.caseflow.projection import CaseflowProjection
from services.intake.app import create_app
from shared.config import Settings
from shared.eventstore import EventStore
from shared.nudges import retry_policy
from shared.projections import ProjectionRunner
from tests.support import generate_log, run_workers, suite_queue


@pytest.fixture(autouse=True)
def immediate_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEFLOW_RETRY_INTERVALS", "0,0,0")  # three retries, no waiting: the bound is what counts


def busiest(store: EventStore) -> int:
    return max(range(store.partitions), key=store.partition_head)


def test_a_transient_failure_is_retried_and_then_succeeds(store: EventStore, connection: redis.Redis) -> None:
    generate_log(store, cases=20)
    queue = suite_queue(connection, "caseflow")
    partition = busiest(store)
    job = queue.enqueue("tests.support.flaky_catch_up", partition, 2, retry=retry_policy())
    run_workers(connection, "caseflow")
    assert job.get_status(refresh=True).value == "finished"
    assert int(connection.get("test:flaky-runs") or 0) == 3  # two failures, then success
    runner = ProjectionRunner(store, CaseflowProjection())
    assert runner.checkpoint(partition) == store.partition_head(partition)
    assert FailedJobRegistry(queue=queue).count == 0


def test_a_lasting_failure_is_kept_reported_and_rerun(
    store: EventStore, connection: redis.Redis, intake: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_log(store, cases=20)
    head = store.head()
    queue = suite_queue(connection, "caseflow")
    partition = busiest(store)
    connection.set("test:broken", 1)
    job = queue.enqueue("tests.support.catch_up_unless_broken", partition, retry=retry_policy())
    run_workers(connection, "caseflow")
    job.refresh()  # type: ignore[no-untyped-call]  # rq's Job.refresh has no annotations
    assert job.get_status().value == "failed"
    assert job.retries_left == 0 and FailedJobRegistry(queue=queue).count == 1  # the bound: 3 retries, then kept

    monkeypatch.setenv("CASEFLOW_READY_MAX_LAG", "0")
    ready = intake.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["status"] == "lagging"
    assert ready.get_json()["queues"]["cf.caseflow"]["failed"] == 1
    assert ready.get_json()["projection_lag"]["caseflow"] > 0

    connection.delete("test:broken")  # the cause is fixed
    runner = create_app(connection, Settings.from_env({})).test_cli_runner()
    assert "1 failed job(s) requeued" in runner.invoke(args=["jobs", "requeue"]).output
    run_workers(connection, "caseflow")
    assert job.get_status(refresh=True).value == "finished"
    assert "failed 0" in runner.invoke(args=["jobs", "status"]).output
    assert ProjectionRunner(store, CaseflowProjection()).checkpoint(partition) == store.partition_head(partition)
    assert store.head() == head  # the failures lost nothing and wrote nothing
