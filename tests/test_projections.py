"""Exactly-once projection under redelivery, duplicates, reordering, crashes and stale workers."""

from __future__ import annotations

import gc
import random
import weakref
from collections.abc import Callable, Sequence
from datetime import date

import fakeredis
import pytest
import redis

from services.caseflow.projection import CaseflowProjection
from services.reporting import citizens, settle
from services.reporting.citizens import ReferralSummary
from services.reporting.projection import ReportingProjection
from shared import projections
from shared.bootstrap import event_store
from shared.checkpoint_watch import CheckpointWatch, PartlyCommitted
from shared.config import Settings
from shared.domain import events as ev
from shared.events import DomainEvent, NewEvent, RecordedEvent
from shared.events.envelope import start_of_day
from shared.eventstore import EventStore, ReadAhead
from shared.gc_tuning import no_collections
from shared.keys import ProjectionKeys
from shared.nudges import SUBSCRIBERS
from shared.projections import (
    Projection,
    ProjectionRunner,
    ProjectionState,
    RebuildFailed,
    RebuildOverlapped,
    can_fork_readers,
    damage,
    rebuild,
    replay,
    replay_into,
)
from shared.redis_values import write
from tests.support import generate_log, run_workers, snapshot, suite_queue

PROJECTIONS: list[Projection] = [CaseflowProjection(), ReportingProjection()]


def reference(store: EventStore, projection: Projection) -> dict[str, object]:
    namespace = f"reference:{projection.name}"
    replay(store, projection, namespace)
    return snapshot(store.redis, namespace)


def live(runner: ProjectionRunner) -> dict[str, object]:
    return snapshot(runner.redis, runner.namespace)


@pytest.mark.parametrize("projection", PROJECTIONS, ids=lambda p: p.name)
def test_catching_up_twice_applies_each_event_once(store: EventStore, projection: Projection) -> None:
    generate_log(store, cases=60)
    runner = ProjectionRunner(store, projection, batch_size=7)
    applied = runner.catch_up_all()
    assert applied == store.head()
    assert runner.catch_up_all() == 0
    assert runner.is_caught_up()
    assert live(runner) == reference(store, projection)


class Wrapping:
    """A projection around another: its name, version, batches and settling are the other's."""

    def __init__(self, inner: Projection) -> None:
        self.inner = inner
        self.name, self.version, self.batch_size = inner.name, inner.version, inner.batch_size

    def settle(self, connection: redis.Redis, namespace: str) -> int:
        return self.inner.settle(connection, namespace)

    def unsettled(self, connection: redis.Redis, namespace: str) -> bool:
        return self.inner.unsettled(connection, namespace)


class CrashingProjection(Wrapping):
    """Dies after applying some events of a batch, as a worker killed mid-batch would."""

    def __init__(self, inner: Projection, crash_at: int) -> None:
        super().__init__(inner)
        self.crash_at = crash_at
        self.seen = 0

    def apply(self, events: Sequence[RecordedEvent], state: ProjectionState) -> None:
        for event in events:
            self.seen += 1
            if self.seen == self.crash_at:
                raise RuntimeError("worker killed")
            self.inner.apply([event], state)


@pytest.mark.parametrize("projection", PROJECTIONS, ids=lambda p: p.name)
def test_a_crash_mid_batch_commits_nothing_and_the_retry_applies_it_once(
    store: EventStore, projection: Projection
) -> None:
    generate_log(store, cases=40)
    crashing = ProjectionRunner(store, CrashingProjection(projection, crash_at=25), batch_size=10)
    with pytest.raises(RuntimeError, match="worker killed"):
        crashing.catch_up_all()
    before_retry = live(crashing)
    healthy = ProjectionRunner(store, projection, batch_size=10)
    healthy.catch_up_all()
    assert before_retry != live(healthy)  # the crash left work undone...
    assert live(healthy) == reference(store, projection)  # ...which the retry did exactly once


class CollectionWatch(Wrapping):
    """Notes, for each collection the collector starts, whether it started while a batch was being folded."""

    def __init__(self, inner: Projection) -> None:
        super().__init__(inner)
        self.folding, self.batches = False, 0
        self.started_while_folding: list[bool] = []

    def apply(self, events: Sequence[RecordedEvent], state: ProjectionState) -> None:
        self.batches += 1
        self.folding = True
        try:
            self.inner.apply(events, state)
            if self.batches == 1:
                gc.collect(0)  # an explicit collection is the caller's: it still runs
        finally:
            self.folding = False

    def __enter__(self) -> CollectionWatch:
        self._thresholds = gc.get_threshold()
        gc.set_threshold(50, 10, 10)  # frequent collections: without the hold, many would start mid-batch
        gc.callbacks.append(self._noted)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._noted)
        gc.set_threshold(*self._thresholds)

    def _noted(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started_while_folding.append(self.folding)


@pytest.mark.parametrize("frozen_before", [False, True], ids=["run freezes", "objects frozen before"])
@pytest.mark.parametrize("run", ["partition worker", "replay"])
def test_no_collection_starts_while_a_batch_is_folded_and_collections_go_on_between_batches(
    store: EventStore, run: str, frozen_before: bool
) -> None:
    """A young collection mid-batch would walk each of the batch's events, alive until it ends
    (``shared.gc_tuning.no_collections``, 7 % of a caseflow worker's instructions): the collector waits for
    the batch's end and is on after a batch that failed. A run that may not freeze what its batches leave
    (something else froze objects first) lets the collections run between batches instead. One explicit
    collection in the first batch shows the watch sees collections started inside."""
    generate_log(store, cases=60)
    if frozen_before:
        gc.freeze()
    try:
        with CollectionWatch(CaseflowProjection()) as watch:
            if run == "replay":
                replay_into(store, [(watch, "watched")], until=store.head(), batch_size=10)
            else:
                ProjectionRunner(store, watch, batch_size=10).catch_up_all()
    finally:
        gc.unfreeze()
    assert watch.batches > 3 and gc.isenabled()
    assert watch.started_while_folding.count(True) == 1  # the explicit one, and none other
    if frozen_before:
        assert watch.started_while_folding.count(False) > 0  # between batches
    failing = ProjectionRunner(store, CrashingProjection(CaseflowProjection(), crash_at=25), prefix="x", batch_size=10)
    with pytest.raises(RuntimeError, match="worker killed"):
        failing.catch_up_all()
    assert gc.isenabled() and gc.get_freeze_count() == 0


class Cycle:
    """An object in a reference cycle: only the collector frees it."""

    def __init__(self) -> None:
        self.me = self


class CycleLeaver(Wrapping):
    """Leaves a cycle behind in its first batch, and in each later batch asks a collection to free it."""

    def __init__(self, inner: Projection) -> None:
        super().__init__(inner)
        self.left: weakref.ref[Cycle] | None = None
        self.freed_during_run: list[bool] = []

    def apply(self, events: Sequence[RecordedEvent], state: ProjectionState) -> None:
        self.inner.apply(events, state)
        if self.left is None:
            self.left = weakref.ref(Cycle())  # unreachable at once, but alive until a collection walks it
        else:
            gc.collect()
            self.freed_during_run.append(self.left() is None)


@pytest.mark.parametrize("run", ["partition worker", "replay"])
def test_what_a_batch_leaves_is_frozen_until_the_run_ends_and_collected_after_it(store: EventStore, run: str) -> None:
    """The documents a batch folded are frozen at its end rather than walked by the collections that follow
    (``shared.gc_tuning.frozen_between_batches``, 5 % of a caseflow worker's time): a cycle left in one batch is
    out of the collector's sight in the next ones, and is freed once the run has ended and handed all back."""
    generate_log(store, cases=60)
    leaver = CycleLeaver(CaseflowProjection())
    if run == "replay":
        replay_into(store, [(leaver, "leaver")], until=store.head(), batch_size=10)
    else:  # one run: the partition with the most events
        fullest = max(range(store.partitions), key=lambda p: len(store.read_partition(p, 0, store.head())))
        ProjectionRunner(store, leaver, batch_size=3).catch_up(fullest)
    assert len(leaver.freed_during_run) > 2
    assert leaver.freed_during_run == [False] * len(leaver.freed_during_run)  # frozen: not collected
    assert gc.get_freeze_count() == 0  # handed back...
    gc.collect()
    assert leaver.left is not None and leaver.left() is None  # ...and freed by the next full collection


def test_a_run_of_batches_leaves_what_another_froze_frozen_and_freezes_nothing_itself(store: EventStore) -> None:
    """A server that froze its preloaded objects keeps them frozen: a run that finds objects frozen neither
    freezes (it could not tell its own from theirs at its end) nor unfreezes."""
    generate_log(store, cases=30)
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        leaver = CycleLeaver(CaseflowProjection())
        replay_into(store, [(leaver, "leaver")], until=store.head(), batch_size=10)
        assert 0 < gc.get_freeze_count() <= frozen  # theirs still frozen (some freed since), none of the run's
        assert leaver.freed_during_run[0] is True  # not frozen: the next batch's collection freed it
    finally:
        gc.unfreeze()


def test_collections_held_off_by_one_who_turned_the_collector_off_stay_off() -> None:
    gc.disable()
    try:
        with no_collections():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
    with no_collections(), no_collections():
        assert not gc.isenabled()
    assert gc.isenabled()


class OvertakenProjection(Wrapping):
    """While this worker is mid-batch, its lease expires and a second worker processes the partition."""

    def __init__(self, inner: Projection, store: EventStore, partition: int) -> None:
        super().__init__(inner)
        self.store, self.partition = store, partition
        self.overtaken = False

    def apply(self, events: Sequence[RecordedEvent], state: ProjectionState) -> None:
        if not self.overtaken:
            self.overtaken = True
            other = ProjectionRunner(self.store, self.inner)
            self.store.redis.delete(other.keys.lease(other.namespace, self.partition))  # the lease ran out
            assert other.catch_up(self.partition) > 0
        self.inner.apply(events, state)


@pytest.mark.parametrize("batch_size", [None, 3], ids=["one-batch", "batches-read-ahead"])
@pytest.mark.parametrize("projection", PROJECTIONS, ids=lambda p: p.name)
def test_a_worker_that_lost_its_lease_cannot_commit_a_stale_batch(
    store: EventStore, projection: Projection, batch_size: int | None
) -> None:
    """Reporting writes blindly, so its stale commit is stopped by the WATCH on the checkpoint; caseflow
    reads the newer case documents and trips its own version check, which the runner sees as overtaken. In
    batches, the slow worker has sent its next batch's read before it was overtaken: the read starts where its
    stale batch ended, not where the other worker left the partition, and must not be taken for the next batch."""
    generate_log(store, cases=40)
    partition = max(range(store.partitions), key=store.partition_head)
    slow = ProjectionRunner(store, OvertakenProjection(projection, store, partition), batch_size=batch_size)
    slow.catch_up(partition)
    assert slow.projection.overtaken  # type: ignore[attr-defined]
    ProjectionRunner(store, projection).catch_up_all()
    assert live(slow) == reference(store, projection)


class RefusedWrite(Wrapping):
    """Adds to a set that the read model holds as a string: Redis refuses that one write of the batch's commit."""

    def apply(self, events: Sequence[RecordedEvent], state: ProjectionState) -> None:
        self.inner.apply(events, state)
        state.add("refused", "member")


def test_a_commit_redis_applies_in_part_marks_the_read_model_damaged_until_a_rebuild(
    store: EventStore, connection: redis.Redis
) -> None:
    """EXEC applies the writes it can and the checkpoint with them, so the batch cannot be redone (its counters
    would count twice): the read model is marked damaged, readiness and ``projections status`` say so, and a
    rebuild, into a new generation, is sound again."""
    from services.reporting.app import create_app
    from shared.health import readiness

    generate_log(store, cases=20)
    runner = ProjectionRunner(store, RefusedWrite(CaseflowProjection()))
    connection.set(f"{runner.namespace}:refused", "a string")
    partition = max(range(store.partitions), key=store.partition_head)
    with pytest.raises(PartlyCommitted, match="WRONGTYPE"):
        runner.catch_up(partition)
    assert runner.checkpoint(partition) == store.partition_head(partition)  # the rest was applied, checkpoint too
    assert list(damage(connection, runner.namespace)) == [partition]
    ready, report = readiness(connection)
    assert not ready and "WRONGTYPE" in report["damaged"]["caseflow"][partition]
    app = create_app(connection, Settings.from_env({}))
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503 and answer.get_json()["status"] == "damaged"
    status = app.test_cli_runner().invoke(args=["projections", "status"]).output
    assert f"DAMAGED in partitions [{partition}], rebuild it (projections rebuild caseflow)" in status
    damaged = 'caseflow_projection_damaged_partitions{projection="caseflow"}'
    assert f"{damaged} 1.0" in app.test_client().get("/metrics").get_data(as_text=True)
    rebuild(store, PROJECTIONS, "cf")
    assert readiness(connection)[0] and app.test_client().get("/readyz").status_code == 200
    assert f"{damaged} 0.0" in app.test_client().get("/metrics").get_data(as_text=True)
    assert "DAMAGED" not in app.test_cli_runner().invoke(args=["projections", "status"]).output
    assert live(ProjectionRunner(store, CaseflowProjection())) == reference(store, CaseflowProjection())


def test_duplicate_and_reordered_nudges_through_rq_give_the_replay_state(
    store: EventStore, connection: redis.Redis
) -> None:
    generate_log(store, cases=80, nudge=True)
    rng = random.Random(7)
    for subscriber in SUBSCRIBERS:
        queue = suite_queue(connection, subscriber.queue)
        partitions = [p for p in range(store.partitions) for _ in range(3)]
        rng.shuffle(partitions)
        for p in partitions:  # every partition nudged three times, in random order
            queue.enqueue(subscriber.catch_up_job, p)
    run_workers(connection)
    for projection in PROJECTIONS:
        runner = ProjectionRunner(store, projection)
        assert runner.is_caught_up()
        assert live(runner) == reference(store, projection)


def test_a_lost_nudge_is_caught_by_the_sweep(store: EventStore, connection: redis.Redis) -> None:
    generate_log(store, cases=20, nudge=False)  # appended, but no job was ever enqueued
    runner = ProjectionRunner(store, CaseflowProjection())
    assert not runner.is_caught_up()
    suite_queue(connection, "caseflow").enqueue("services.caseflow.jobs.sweep")
    run_workers(connection, "caseflow")
    assert runner.is_caught_up()
    assert live(runner) == reference(store, CaseflowProjection())


def test_an_event_applied_twice_is_detected(store: EventStore) -> None:
    """The case projection checks stream positions, so a double apply fails loudly instead of corrupting."""
    generate_log(store, cases=5)
    runner = ProjectionRunner(store, CaseflowProjection())
    runner.catch_up_all()
    partition = max(range(store.partitions), key=store.partition_head)
    store.redis.set(runner.keys.checkpoint(runner.namespace, partition), 0)  # as if it had not been stored
    with pytest.raises((RuntimeError, ValueError), match=r"applied to version|no rule for ReferralReceived"):
        runner.catch_up(partition)


def test_a_rebuild_gives_exactly_what_incremental_projection_built(store: EventStore, connection: redis.Redis) -> None:
    generate_log(store, cases=120, nudge=True)
    run_workers(connection)  # incremental, by real workers, partition by partition
    for projection in PROJECTIONS:
        incremental = ProjectionRunner(store, projection)
        built = live(incremental)
        assert built, "the workers should have built something"
        namespace = rebuild(store, [projection], "cf")[projection.name]
        assert namespace != incremental.namespace
        assert snapshot(connection, namespace) == built
        # Readers and workers now use the new generation, and it keeps up with new events.
        assert ProjectionRunner(store, projection).namespace == namespace
    generate_log(store, cases=10, seed=9, nudge=True)
    run_workers(connection)
    for projection in PROJECTIONS:
        assert live(ProjectionRunner(store, projection)) == reference(store, projection)


def test_of_two_rebuilds_at_once_the_first_to_finish_is_kept_and_readers_never_see_an_empty_model(
    store: EventStore, connection: redis.Redis
) -> None:
    """A rebuild that began first and finished last used to switch back to its own generation and delete the
    others, the one it switched to included: readers were left on an empty, deleted model."""
    generate_log(store, cases=60, nudge=True)
    run_workers(connection)
    projection = ReportingProjection()
    built = live(ProjectionRunner(store, projection))
    later: dict[str, str] = {}

    def meanwhile(_: int) -> None:  # a second rebuild runs from start to end while the first is under way
        if not later:
            later.update(rebuild(store, [projection], "cf"))

    with pytest.raises(RebuildOverlapped, match="reporting"):
        rebuild(store, [projection], "cf", progress=meanwhile)
    runner = ProjectionRunner(store, projection)
    assert runner.namespace == later["reporting"] and runner.is_caught_up()
    assert live(runner) == built == reference(store, projection)
    assert not list(connection.scan_iter(match=f"{runner.keys.namespace(projection.version, 1)}:*"))  # the first one's


def test_a_replay_that_writes_behind_and_forgets_gives_what_workers_built(
    store: EventStore, connection: redis.Redis
) -> None:
    """A long replay keeps documents in memory between batches and drops the oldest: with a write every 7
    events and at most 4 documents held, nearly every case is written, dropped and read back mid-course."""
    generate_log(store, cases=120, nudge=True)
    run_workers(connection)
    for projection in PROJECTIONS:
        namespace = f"small:{projection.name}"
        replay_into(store, [(projection, namespace)], until=store.head(), batch_size=5, flush_every=7, keep_docs=4)
        assert snapshot(connection, namespace) == live(ProjectionRunner(store, projection))


def test_a_rebuild_in_several_processes_gives_what_workers_built(
    real_connection: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forked processes share the partitions; each writes behind in small steps (documents belong to one
    partition, counters change commutatively), and together they give the workers' state."""
    store = event_store(real_connection, settings)
    assert can_fork_readers(real_connection)
    generate_log(store, cases=150, nudge=True)
    run_workers(real_connection)
    built = {projection.name: live(ProjectionRunner(store, projection)) for projection in PROJECTIONS}
    monkeypatch.setattr(projections, "FLUSH_EVERY", 11)
    monkeypatch.setattr(projections, "KEEP_DOCS", 6)
    seen: list[int] = []
    namespaces = rebuild(store, PROJECTIONS, "cf", progress=seen.append, processes=3)
    assert sum(seen) == store.head()
    for projection in PROJECTIONS:
        assert snapshot(real_connection, namespaces[projection.name]) == built[projection.name]
        assert ProjectionRunner(store, projection).namespace == namespaces[projection.name]


def test_several_rebuild_processes_need_a_server_they_can_reach(settings: Settings) -> None:
    """An in-process fake cannot be shared with forked processes: refused, not silently rebuilt half."""
    store = event_store(fakeredis.FakeRedis(), settings)
    assert not can_fork_readers(store.redis)
    generate_log(store, cases=3)
    with pytest.raises(ValueError, match="need a Redis server"):
        rebuild(store, PROJECTIONS, "cf", processes=2)


def test_the_rebuild_command_shows_progress_and_switches(store: EventStore, connection: redis.Redis) -> None:
    from services.reporting.app import create_app

    generate_log(store, cases=30)
    result = (
        create_app(connection, Settings.from_env({})).test_cli_runner().invoke(args=["projections", "rebuild", "all"])
    )
    assert result.exit_code == 0, result.output
    assert "rebuilding caseflow" in result.output
    assert f"now reading cf:proj:reporting:v{ReportingProjection.version}:g1" in result.output
    status = create_app(connection, Settings.from_env({})).test_cli_runner().invoke(args=["projections", "status"])
    assert "caught up" in status.output and ":g1" in status.output


def test_a_rebuild_redis_refuses_a_write_of_switches_nothing_and_leaves_nothing_behind(
    store: EventStore, connection: redis.Redis
) -> None:
    """A write of the rebuild refused (here a key of another type where it adds to a set; Redis out of memory is the
    likelier case): the command says why in one line, with no traceback (on a Redis server, from each of its
    processes), readers stay where they were, what it had built is deleted, and the next rebuild is sound."""
    from services.reporting.app import create_app

    generate_log(store, cases=30)
    cli = create_app(connection, Settings.from_env({})).test_cli_runner()
    assert cli.invoke(args=["projections", "rebuild", "all"]).exit_code == 0
    keys = ProjectionKeys("cf", "caseflow")
    version = CaseflowProjection.version
    active = connection.get(keys.active_generation(version))
    reporting = ProjectionKeys("cf", "reporting")

    def next_generation(keys: ProjectionKeys, version: int) -> str:
        return keys.namespace(version, int(connection.get(keys.generations(version)) or 0) + 1)

    failing, beside = next_generation(keys, version), next_generation(reporting, ReportingProjection.version)
    built = keys.namespace(version, int(active or 0))
    a_set = next(k.decode() for k in connection.scan_iter(match=f"{built}:*") if connection.type(k) == b"set")
    connection.set(a_set.replace(built, failing), "a string")  # where the rebuild will add to that set
    result = cli.invoke(args=["projections", "rebuild", "all"])
    assert result.exit_code == 1
    assert "the rebuild failed and switched nothing" in result.output and "WRONGTYPE" in result.output
    assert "Traceback" not in result.output
    assert connection.get(keys.active_generation(version)) == active
    assert list(connection.scan_iter(match=f"{failing}:*")) == []
    assert list(connection.scan_iter(match=f"{beside}:*")) == []  # the read model built beside it too
    assert cli.invoke(args=["projections", "rebuild", "all"]).exit_code == 0
    assert live(ProjectionRunner(store, CaseflowProjection())) == reference(store, CaseflowProjection())


class RedisGoneMidway(Wrapping):
    """Redis goes away part way through a rebuild: the batch's read model cannot be written, nor anything deleted."""

    def apply(self, events: Sequence[RecordedEvent], state: ProjectionState) -> None:
        raise redis.ConnectionError("Connection refused")


def test_a_rebuild_that_lost_redis_says_so_even_if_it_cannot_clean_up(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild's failure is what its caller hears of, not the cleanup's that failed after it (what could not be
    deleted is deleted by the rebuild after next, as any older generation)."""
    generate_log(store, cases=5)

    def unreachable(*_: object) -> None:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(projections, "_drop_generation", unreachable)
    with pytest.raises(RebuildFailed, match="ConnectionError: Connection refused"):
        rebuild(store, [RedisGoneMidway(CaseflowProjection())], "cf")


@pytest.mark.parametrize("projection", PROJECTIONS, ids=lambda p: p.name)
def test_a_batch_read_ahead_is_not_taken_once_another_worker_moved_the_partition_on(
    store: EventStore, projection: Projection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker sends its next batch's read while it folds the current one, and decodes it while its commit is
    applied. If another worker commits the partition's next batches meanwhile, the read starts behind the
    checkpoint: taken, its events would be applied twice."""
    generate_log(store, cases=40)
    partition = max(range(store.partitions), key=store.partition_head)
    slow = ProjectionRunner(store, projection, batch_size=3)
    committed, overtaken = CheckpointWatch.committed, list[int]()

    def another_worker_first(watch: CheckpointWatch) -> tuple[bool, int]:  # as the slow one's first commit lands
        if not overtaken:
            overtaken.append(0)  # once: the other worker's own commits go on as usual
            other = ProjectionRunner(store, projection)
            store.redis.delete(other.keys.lease(other.namespace, partition))  # the lease ran out
            overtaken[0] = other.catch_up(partition)
        return committed(watch)

    monkeypatch.setattr(CheckpointWatch, "committed", another_worker_first)
    slow.catch_up(partition)
    assert overtaken[0] > 0
    monkeypatch.undo()
    ProjectionRunner(store, projection).catch_up_all()  # the other partitions
    assert live(slow) == reference(store, projection)


@pytest.mark.parametrize("projection", PROJECTIONS, ids=lambda p: p.name)
def test_a_batch_read_ahead_on_a_connection_that_dropped_is_read_again(
    store: EventStore, projection: Projection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read sent ahead bypasses the client's retries (which ride out a Redis restart): when its connection drops
    before its reply is taken, the batch reads again as any read does, rather than fail the worker's job."""
    generate_log(store, cases=40)
    send = store.read_partition_ahead
    dropped = []

    def dropping(partition: int, after: int, limit: int) -> ReadAhead:
        ahead = send(partition, after, limit)
        ahead._connection.disconnect()  # the reply is lost with its connection
        dropped.append(after)
        return ahead

    monkeypatch.setattr(store, "read_partition_ahead", dropping)
    runner = ProjectionRunner(store, projection, batch_size=3)
    assert runner.catch_up_all() == store.head()
    assert dropped
    assert live(runner) == reference(store, projection)


@pytest.mark.parametrize("projection", PROJECTIONS, ids=lambda p: p.name)
def test_a_commit_whose_answer_is_lost_with_its_connection_is_found_out_from_the_checkpoint(
    store: EventStore, projection: Projection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's commit is sent, and its connection drops before the answer is read: the server may or may not
    have applied it. The worker reads the checkpoint again on a new connection and goes on from there, reading its
    documents afresh, rather than fail its job or take the batch for done."""
    generate_log(store, cases=40)
    committed, dropped = CheckpointWatch.committed, list[bool]()

    def answer_lost(watch: CheckpointWatch) -> tuple[bool, int]:
        if len(dropped) < 3:
            watch._connection.disconnect()
            dropped.append(True)
        return committed(watch)

    monkeypatch.setattr(CheckpointWatch, "committed", answer_lost)
    runner = ProjectionRunner(store, projection, batch_size=3)
    runner.catch_up_all()
    assert len(dropped) == 3
    assert live(runner) == reference(store, projection)


def test_documents_a_worker_holds_serve_only_the_log_they_came_from(store: EventStore, connection: redis.Redis) -> None:
    """A process keeps each partition's documents with the checkpoint it committed. Another log restored into
    the same Redis may bring the same read model's namespace to the same checkpoint: the held documents must
    not be taken for it (they are kept by the log's identity too)."""
    generate_log(store, cases=30)
    projection = CaseflowProjection()
    ProjectionRunner(store, projection).catch_up_all()
    partition = next(p for p in range(store.partitions) if store.partition_head(p))
    checkpoint = ProjectionRunner(store, projection).checkpoint(partition)
    held = ProjectionRunner(store, projection)._state_at(partition, checkpoint)
    assert held.documents_held > 0  # the same log, the same checkpoint: this process's documents
    ProjectionRunner(store, projection)._hold(partition, checkpoint, held)
    connection.flushdb()  # another log is restored into this Redis...
    restored = EventStore(connection, store.registry, partitions=store.partitions)
    assert restored.log_id != store.log_id
    # ...and its read model stands at the same checkpoint: nothing held is offered for it.
    state = ProjectionRunner(restored, projection)._state_at(partition, checkpoint)
    assert state.documents_held == 0


def test_a_worker_process_lets_go_of_documents_of_a_generation_no_longer_read(
    store: EventStore, connection: redis.Redis
) -> None:
    generate_log(store, cases=30)
    projection = ReportingProjection()
    ProjectionRunner(store, projection).catch_up_all()
    before = {key[1] for key in projections._HELD if key[1].startswith("cf:proj:reporting:")}
    assert before == {f"cf:proj:reporting:v{projection.version}:g0"}
    rebuild(store, [projection], "cf")
    generate_log(store, cases=5, seed=3)
    ProjectionRunner(store, projection).catch_up_all()
    assert {key[1] for key in projections._HELD if key[1].startswith("cf:proj:reporting:")} == {
        f"cf:proj:reporting:v{projection.version}:g1"
    }


class Unsettled(ReportingProjection):
    """A reporting worker that commits its batches and has not settled yet."""

    def settle(self, connection: redis.Redis, namespace: str) -> int:
        return 0


def referred_twice(store: EventStore) -> tuple[Callable[[str, DomainEvent, str, int], None], ProjectionRunner]:
    """A citizen referred twice, settled; then one referral declined, committed and not yet settled."""

    def append(case_id: str, payload: DomainEvent, day: str, version: int) -> None:
        event = NewEvent(case_id, payload, start_of_day(date.fromisoformat(day)), "test")
        store.append(case_id, [event], expected_version=version)

    for case_id, day in (("case-one", "2016-01-04"), ("case-two", "2016-01-05")):
        append(case_id, ev.ReferralReceived("demo-cph", "reden", True, citizen_id="citizen-x"), day, 0)
    runner = ProjectionRunner(store, ReportingProjection())
    runner.catch_up_all()
    append("case-one", ev.ReferralDeclined("outside target group"), "2016-01-10", 1)
    ProjectionRunner(store, Unsettled()).catch_up_all()
    return append, runner


def test_a_settle_overtaken_by_a_batch_keeps_its_citizen_marked_and_the_next_settle_puts_it_right(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A settle reads the referrals, a batch moves one of them before the settle writes. The settle's
    correction is then stale, so it must leave the citizen marked (and not forget it)."""
    append, runner = referred_twice(store)
    steps, raced = citizens.correction_steps, list[bool]()

    def overtaken(courses: Sequence[ReferralSummary]) -> dict[tuple[str, str, str], int]:
        if not raced:
            raced.append(True)
            append("case-two", ev.ReferralWithdrawn("citizen moved"), "2016-01-12", 1)
            ProjectionRunner(store, Unsettled()).catch_up_all()
        return steps(courses)

    monkeypatch.setattr(settle, "correction_steps", overtaken)
    assert settle.settle_citizens(store.redis, runner.namespace) == 1 and raced
    assert runner.projection.unsettled(store.redis, runner.namespace)  # the withdrawal came after the read
    runner.settle()
    assert not runner.projection.unsettled(store.redis, runner.namespace)
    assert live(runner) == reference(store, runner.projection)


def test_a_mark_set_again_after_another_settle_forgot_it_is_not_forgotten_by_a_settle_that_listed_it_before(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two settles list the same marked citizen. The second settles it and forgets the mark; a batch then moves a
    referral and marks the citizen again, at the same count. The first, reading the referrals from before that
    batch, must not take the new mark for the one it listed (the reviewer's finding: it did, and the citizen
    stayed counted as withdrawn for good)."""
    append, runner = referred_twice(store)
    watch, first_steps, order = redis.client.Pipeline.watch, citizens.correction_steps, list[str]()

    def second_settles_first(pipe: redis.client.Pipeline, *names: str) -> None:
        if not order:  # the first settle has listed the citizen and is about to begin
            order.append("second settles")
            settle.settle_citizens(store.redis, runner.namespace)
        watch(pipe, *names)  # type: ignore[no-untyped-call]

    def then_a_batch(courses: Sequence[ReferralSummary]) -> dict[tuple[str, str, str], int]:
        steps = first_steps(courses)
        if order == ["second settles", "second reads"]:  # this read is the first settle's
            order.append("a batch marks again")
            append("case-two", ev.ReferralWithdrawn("citizen moved"), "2016-01-08", 1)
            ProjectionRunner(store, Unsettled()).catch_up_all()
        elif order == ["second settles"]:
            order.append("second reads")
        return steps

    monkeypatch.setattr(redis.client.Pipeline, "watch", second_settles_first)
    monkeypatch.setattr(settle, "correction_steps", then_a_batch)
    settle.settle_citizens(store.redis, runner.namespace)
    monkeypatch.undo()
    if "a batch marks again" not in order:  # the first found the mark gone and left: the batch comes now
        append("case-two", ev.ReferralWithdrawn("citizen moved"), "2016-01-08", 1)
        ProjectionRunner(store, Unsettled()).catch_up_all()
    runner.settle()
    assert live(runner) == reference(store, runner.projection)


def test_a_flush_adds_every_member_to_every_set_however_many(connection: redis.Redis) -> None:
    """A flush sends its adds as one script, a thousand members per SADD (Lua's ``unpack`` refuses more than
    8,000 values): a set given 10,000 members in one flush holds them all, as does the set beside it."""
    state = ProjectionState(connection, "flushed")
    many = [f"case-{i:05d}" for i in range(10_000)]
    for member in many:
        state.add("programme:p:cases", member)
    state.add("citizen:c:cases", "case-00001")
    write(connection, state.take_writes())
    assert connection.smembers("flushed:programme:p:cases") == {m.encode() for m in many}
    assert connection.smembers("flushed:citizen:c:cases") == {b"case-00001"}
