"""Processes that fold the log make full garbage collections rare (shared.gc_tuning): what they hold is
walked by every full collection, a third of a rebuild's time under CPython's defaults
(docs/benchmarks.md). A speed is measured in bench/, not here; these check that each such process is set up
so, the worker processes through a job that asks the process it runs in."""

from __future__ import annotations

import gc
import time
from typing import Any

import pytest
import redis
from rq import Queue

from services.reporting.app import create_app
from shared.config import Settings
from shared.eventstore import EventStore
from shared.gc_tuning import FULL_COLLECTION_AFTER
from shared.nudges import queue_name
from shared.projections import rebuild
from tests.support import generate_log, spawn_worker, stop_workers


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["caseflow", "reporting"])
def test_a_worker_process_makes_full_collections_rare(
    kind: str, real_connection: redis.Redis, real_redis_url: str
) -> None:
    worker = spawn_worker(kind, real_redis_url)
    try:
        job = Queue(queue_name(Settings.from_env({}).key_prefix, kind), connection=real_connection).enqueue(
            "tests.support.gc_thresholds"
        )
        deadline = time.monotonic() + 30
        while not job.is_finished:
            assert not job.is_failed and worker.poll() is None and time.monotonic() < deadline, "the job never ran"
            time.sleep(0.1)
            job.refresh()  # type: ignore[no-untyped-call]  # rq's Job.refresh has no annotations
        answer = job.return_value()
    finally:
        stop_workers([worker])
    young, middle, _ = gc.get_threshold()  # pytest's own: the interpreter's defaults (tests/conftest.py)
    assert answer == (young, middle, FULL_COLLECTION_AFTER)


def test_the_rebuild_command_makes_full_collections_rare_before_it_forks(
    store: EventStore, connection: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild's processes are forked inside ``rebuild`` and inherit the thresholds it was called with:
    a spy records them and runs the real rebuild."""
    import shared.cli

    generate_log(store, cases=5)
    young, middle, full = gc.get_threshold()
    assert full != FULL_COLLECTION_AFTER
    called_with: list[tuple[int, int, int]] = []

    def spy(*args: Any, **kwargs: Any) -> dict[str, str]:
        called_with.append(gc.get_threshold())
        return rebuild(*args, **kwargs)

    monkeypatch.setattr(shared.cli, "rebuild", spy)
    result = (
        create_app(connection, Settings.from_env({})).test_cli_runner().invoke(args=["projections", "rebuild", "all"])
    )
    assert result.exit_code == 0, result.output
    assert called_with == [(young, middle, FULL_COLLECTION_AFTER)]
