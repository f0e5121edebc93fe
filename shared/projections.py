"""Running projections exactly once per event, with any number of workers.

The log is split into partitions by stream id. A projection keeps one
checkpoint per partition: the global position of the last event it applied
there. A batch is committed in one MULTI/EXEC with its checkpoint, under a
WATCH on that checkpoint, so:

- a worker killed mid-batch commits nothing, and the next one redoes the batch;
- two workers on the same partition cannot both commit the same batch (the
  second EXEC aborts), so no event is applied twice and none is skipped;
- events of one stream are applied in stream order (one stream, one partition).

A lease per partition only keeps workers from doing the same work at once;
correctness never depends on it (a lease can expire under a slow worker).

Keys written through ``ProjectionState.put_doc`` must belong to one stream
(so to one partition); keys shared across partitions may only be changed by
commutative operations (``incr``, ``add``), because partitions commit in any
order relative to each other.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any, Protocol

import orjson
import redis

from shared.checkpoint_watch import CheckpointWatch, Lease, PartlyCommitted
from shared.events import RecordedEvent
from shared.eventstore import EventStore, ReadAhead
from shared.gc_tuning import frozen_between_batches, no_collections
from shared.ids import random_hex
from shared.keys import ProjectionKeys
from shared.redis_values import Command, as_text, entry_position, load_script, stream_entries, write

log = logging.getLogger(__name__)

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: the counters' hashes. ARGV[1]: JSON, per key (in order) an object of field -> amount. One argument,
# not three per counter: redis-py encodes each argument in Python, and a batch moves thousands of counters.
_INCREMENTS = """
for i, fields in ipairs(cjson.decode(ARGV[1])) do
  for field, amount in pairs(fields) do redis.call('HINCRBY', KEYS[i], field, amount) end
end
return 0
"""
# KEYS: sets. ARGV[1]: JSON, per key (in order) a list of members to add (a thousand at a time: Lua's unpack
# is bounded). As for the counters: a batch that meets a thousand new cases adds to a thousand sets (each
# citizen's cases), and one SADD each, packed and answered in redis-py, cost a caseflow worker 6 % of its time.
_ADDS = """
for i, members in ipairs(cjson.decode(ARGV[1])) do
  for j = 1, #members, 1000 do redis.call('SADD', KEYS[i], unpack(members, j, math.min(j + 999, #members))) end
end
return 0
"""
# Marks in a sorted set (ZINCRBY), each where a lexicographic range of another sorted set holds enough members as
# it stands at commit, after the batch's own members were added: whichever partition commits last sees the
# others'. ARGV[1]: a list of [range key's index, mark key's index, min, max, threshold, marked member].
_MARKS = """
for _, t in ipairs(cjson.decode(ARGV[1])) do
  if redis.call('ZLEXCOUNT', KEYS[t[1]], t[3], t[4]) >= t[5] then redis.call('ZINCRBY', KEYS[t[2]], 1, t[6]) end
end
return 0
"""


# A document's bytes depend only on its content: a dict's keys are sorted; a dataclass (orjson writes its
# attributes as they are, sorting none) holds its fields in their order, as every way of building one keeps them.
_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
Decode = Callable[[str, dict[str, Any]], Any]
Encode = Callable[[Any], Any]  # a document as orjson writes it: a dict, or a dataclass (written natively)


def _as_stored(_: str, doc: dict[str, Any]) -> Any:
    return doc


def _as_is(value: Any) -> Any:
    return value


class ProjectionState:
    """The unit of work of a batch: reads go through ``reader``, writes wait until ``flush``.

    Documents are kept as the projection uses them (``decode`` turns a stored
    document into, say, a domain object; ``encode`` turns it back when it is
    written), so a replay that keeps one state across many batches folds each
    case in memory and writes it once per flush, not once per batch. In a
    partition run a state lives from batch to batch while its documents are
    those committed (``ProjectionRunner._state_at``). Commutative changes are
    combined per key and field before they are sent, so a thousand referrals
    on one day cost one HINCRBY per counter, not a thousand.
    """

    def __init__(self, reader: redis.Redis, namespace: str) -> None:
        self._reader = reader
        self._namespace = namespace
        self._docs: dict[str, Any] = {}
        self._dirty: dict[str, Encode] = {}
        self._increments: dict[str, dict[str, int]] = {}
        self._members: dict[str, set[str]] = {}
        self._lowest: dict[str, dict[str, float]] = {}
        self._scores: dict[str, dict[str, float]] = {}
        self._marks: dict[tuple[str, str], list[Any]] = {}

    def key(self, name: str) -> str:
        return f"{self._namespace}:{name}"

    def load_docs(self, names: Iterable[str], decode: Decode = _as_stored) -> None:
        """Fetch the documents a batch will touch in one round trip (those not already held)."""
        wanted = [n for n in dict.fromkeys(names) if n not in self._docs]
        if wanted:
            for name, raw in zip(wanted, self._reader.mget([self.key(n) for n in wanted]), strict=True):
                self._docs[name] = decode(name, orjson.loads(raw)) if raw is not None else None

    def get_doc(self, name: str, decode: Decode = _as_stored) -> Any:
        """The document as the projection last put it, or as stored (decoded); None if there is none."""
        if name not in self._docs:
            self.load_docs([name], decode)
        return self._docs[name]

    def put_doc(self, name: str, value: Any, encode: Encode = _as_is) -> None:
        self._docs[name] = value
        self._dirty[name] = encode

    def incr(self, name: str, field: str, amount: int = 1) -> None:
        fields = self._increments.setdefault(name, {})
        fields[field] = fields.get(field, 0) + amount

    def incr_many(self, names: Iterable[str], changes: dict[str, int]) -> None:
        """The same changes to several counters' hashes (a course's counters for each family it counts in)."""
        for name in names:
            fields = self._increments.setdefault(name, {})
            for field, amount in changes.items():
                fields[field] = fields.get(field, 0) + amount

    def add(self, name: str, member: str) -> None:
        self._members.setdefault(self.key(name), set()).add(member)

    def lowest(self, name: str, member: str, score: float) -> None:
        """Keep the lowest score seen for a member (ZADD LT): a minimum, so commutative across partitions."""
        seen = self._lowest.setdefault(self.key(name), {})
        seen[member] = min(score, seen.get(member, score))

    def score(self, name: str, member: str, score: float) -> None:
        """Set a member's score; only for sorted sets owned by one stream's partition."""
        self._scores.setdefault(self.key(name), {})[member] = score

    def mark_if(self, marks: str, marked: str, name: str, lex_range: tuple[str, str], at_least: int) -> None:
        """Mark ``marked`` in the sorted set ``marks`` (a work list: see the reporting projection's ``settle``) if,
        at commit, the sorted set ``name`` holds ``at_least`` members in the lexicographic range (ZLEXCOUNT), this
        batch's ``score``s included."""
        self._marks[(self.key(marks), marked)] = [self.key(name), self.key(marks), *lex_range, at_least, marked]

    @property
    def documents_held(self) -> int:
        return len(self._docs)

    def forget_oldest(self, keep: int) -> None:
        """Bound a long-lived state's memory: drop the documents first loaded (written already, see
        ``flush``), which in a log in date order are mostly courses that have ended."""
        if self._dirty:
            raise RuntimeError("flush before forgetting documents")
        for name in list(self._docs)[: max(0, len(self._docs) - keep)]:
            del self._docs[name]

    def take_writes(self) -> list[Command]:
        """The writes pending so far as commands (a handful however many events), for the caller to send, and
        start afresh. Commands, not a redis-py pipeline's calls: a pipeline encodes each argument in Python, and
        a caseflow batch's MSET has thousands (5 % of a worker's CPU); ``shared.redis_values`` packs them in C."""
        writes: list[Command] = []
        if self._dirty:
            docs = self._docs
            writes.append(
                (
                    "MSET",
                    *[
                        part
                        for name, encode in self._dirty.items()
                        for part in (self.key(name), orjson.dumps(encode(docs[name]), option=_SORTED))
                    ],
                )
            )
        if self._increments:
            # One EVAL (the source, not its SHA: a script cache lost in a restart must fail the whole
            # transaction's call, not silently skip counters). A sum of zero is still sent: HINCRBY by 0
            # creates the field, as the separate changes would have.
            names = list(self._increments)
            changes = orjson.dumps([self._increments[name] for name in names])
            writes.append(("EVAL", _INCREMENTS, len(names), *[self.key(name) for name in names], changes))
        if self._members:
            keys = list(self._members)
            adds = orjson.dumps([sorted(self._members[key]) for key in keys])
            writes.append(("EVAL", _ADDS, len(keys), *keys, adds))
        for key, scores in self._lowest.items():
            writes.append(("ZADD", key, "LT", *_score_pairs(scores)))
        for key, scores in self._scores.items():
            writes.append(("ZADD", key, *_score_pairs(scores)))
        if self._marks:  # after the scores above: a range counts the members this batch added
            keys = list(dict.fromkeys(k for t in self._marks.values() for k in t[:2]))
            index = {k: i + 1 for i, k in enumerate(keys)}
            marks = [[index[t[0]], index[t[1]], *t[2:]] for t in self._marks.values()]
            writes.append(("EVAL", _MARKS, len(keys), *keys, orjson.dumps(marks)))
        self._dirty, self._increments, self._members, self._lowest, self._scores = {}, {}, {}, {}, {}
        self._marks = {}
        return writes


def _score_pairs(scores: dict[str, float]) -> list[str | float]:
    """ZADD's arguments: score, member, score, member, ..."""
    return [part for member, score in scores.items() for part in (score, member)]


class Projection(Protocol):
    name: str
    version: int
    # Events at most per committed batch (a worker that is up to date commits what is new): larger batches fold
    # more events per document written, and hold Redis longer in their commit's transaction.
    batch_size: int

    def apply(self, events: Sequence[RecordedEvent], state: ProjectionState) -> None:
        """Fold a batch of one partition's events (in global order) into the read model."""

    def settle(self, connection: redis.Redis, namespace: str) -> int:
        """Work on what several partitions committed, once their batches have (convergent: any number of calls,
        racing or crashing, end in the same state). How much was pending; 0 when nothing is."""

    def unsettled(self, connection: redis.Redis, namespace: str) -> bool:
        """Whether ``settle`` has work pending."""


class ProjectionRunner:
    def __init__(
        self,
        store: EventStore,
        projection: Projection,
        *,
        prefix: str = "cf",
        lease_ttl_ms: int = 10_000,
        batch_size: int | None = None,
    ) -> None:
        self.store = store
        self.redis: redis.Redis = store.redis
        self.projection = projection
        self.keys = ProjectionKeys(prefix, projection.name)
        self.namespace = active_namespace(self.redis, prefix, projection)
        self._lease_ttl_ms = lease_ttl_ms
        self._batch_size = batch_size or projection.batch_size
        self._release = load_script(self.redis, _RELEASE)
        self._ahead: ReadAhead | None = None  # the next batch's read, sent while this one is folded

    def checkpoint(self, partition: int) -> int:
        return int(self.redis.get(self.keys.checkpoint(self.namespace, partition)) or 0)

    def is_caught_up(self) -> bool:
        return caught_up(self.store, self.namespace) and not self.projection.unsettled(self.redis, self.namespace)

    def catch_up_all(self) -> int:
        applied = sum(self.catch_up(p, settle=False) for p in range(self.store.partitions))
        self.settle()  # also what a worker that died before settling left
        return applied

    def catch_up(self, partition: int, settle: bool = True) -> int:
        """Apply every event of a partition not yet applied, then settle what that left to settle. Returns how
        many this call applied."""
        # Clear the nudge flag before reading, so an append after this point enqueues a new nudge.
        self.redis.delete(self.keys.nudge_pending(partition))
        applied = 0
        key = self.keys.lease(self.namespace, partition)
        while True:
            lease = Lease(key, random_hex(), self._lease_ttl_ms)
            if not self.redis.set(key, lease.token, nx=True, px=lease.ttl_ms):
                return applied  # the holder re-checks the partition after it lets go
            try:
                applied += self._apply_batches(partition, lease)
            finally:
                self._discard_ahead()
                self._release(keys=[key], args=[lease.token])
            # An event appended while we held the lease may have seen it held and not been nudged.
            if self.store.partition_head(partition) <= self.checkpoint(partition):
                if applied:
                    log.info("%s: applied %d event(s) in partition %d", self.projection.name, applied, partition)
                if applied and settle:
                    self.settle()
                return applied

    def settle(self) -> None:
        """Settle what the batches committed left to settle (what a worker that died before settling left is
        settled by the next sweep's ``catch_up_all``)."""
        for _ in range(SETTLE_PASSES):
            if not self.projection.settle(self.redis, self.namespace):
                return

    def _apply_batches(self, partition: int, lease: Lease) -> int:
        """Apply the partition's batches until it is caught up, each with no collection meanwhile and what it
        leaves frozen (``no_collections``, ``frozen_between_batches``); how many events were applied."""
        applied = 0
        checkpoint_key = self.keys.checkpoint(self.namespace, partition)
        with CheckpointWatch(self.redis, checkpoint_key, lease) as watch, frozen_between_batches() as freeze:
            with no_collections(freeze):
                after = watch.checkpoint()
                events = self._read_batch(partition, after)
            while events:
                with no_collections(freeze):
                    after, events, done = self._apply_batch(partition, after, events, watch)
                applied += done
        return applied

    def _apply_batch(
        self, partition: int, after: int, events: list[RecordedEvent], watch: CheckpointWatch
    ) -> tuple[int, list[RecordedEvent], int]:
        """Fold a batch read after the checkpoint ``after`` (WATCHed since before its documents are read) and commit
        it; while the server commits, read and decode the batch that follows. Returns the checkpoint as it then
        stands, the batch after it and how many events were applied (none when another worker committed first)."""
        state = self._state_at(partition, after)
        try:
            self.projection.apply(events, state)
        except Exception:
            if (checkpoint := watch.checkpoint()) != after:
                return checkpoint, self._read_batch(partition, checkpoint), 0  # overtaken: we read its newer state
            raise
        end = events[-1].global_position
        watch.send_commit(state.take_writes(), end)
        following = self._read_batch(partition, end)  # decoded while the server commits
        try:
            committed, checkpoint = watch.committed()
        except PartlyCommitted as partly:
            self._damaged(partition, events[0].global_position, end, partly)
            raise
        if committed:
            self._hold(partition, end, state)
        if checkpoint != end:
            following = self._read_batch(partition, checkpoint)
        return checkpoint, following, len(events) if committed else 0

    def _damaged(self, partition: int, first: int, end: int, partly: PartlyCommitted) -> None:
        """Say so where readiness and ``projections status`` look, and in the log: the checkpoint moved past a batch
        whose writes were applied in part, so the read model is wrong from here on, and silently so otherwise."""
        what = f"events {first}-{end}: {partly.refused}"
        self.redis.hset(ProjectionKeys.damage(self.namespace), str(partition), what)
        log.error("%s: DAMAGED in partition %d, %s; rebuild it (projections rebuild)", self.namespace, partition, what)

    def _read_batch(self, partition: int, after: int) -> list[RecordedEvent]:
        """The partition's events after the checkpoint. A full batch sends the next one's read, from where it ends,
        before it is decoded and folded (the server reads while this process works: a worker spent about a seventh
        of its time waiting); the next batch takes it if it starts there, whoever committed up to there (entries
        up to a position never change, so the read is what one made now would give, up to its end). A read ahead
        is sent and taken without the client's retries: one whose connection dropped is made again with them."""
        ahead, self._ahead = self._ahead, None
        entries = None
        if ahead is not None and (ahead.partition, ahead.after) == (partition, after):
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):  # read again, with retries
                entries = ahead.stored()
        elif ahead is not None:
            ahead.discard()
        if entries is None:
            entries = self.store.read_partition_stored(partition, after, self._batch_size)
        if len(entries) == self._batch_size:  # before decoding: the server reads while this process decodes
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):  # the next batch reads for itself
                self._ahead = self.store.read_partition_ahead(
                    partition, entry_position(entries[-1][0]), self._batch_size
                )
        return self.store.decode(entries)

    def _discard_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.discard()

    def _state_at(self, partition: int, checkpoint: int) -> ProjectionState:
        """The documents this process committed with ``checkpoint``, if that is still the partition's
        checkpoint: every commit moves it forward, so no other worker has written them since. Otherwise
        (or after a failed batch, whose documents may be half-changed) a state that reads them afresh (after the
        WATCH on the checkpoint: a commit between the read and the batch's fails)."""
        held = _HELD.pop((self.store.log_id, self.namespace, partition), None)
        if held is None or held[0] != checkpoint:
            return ProjectionState(self.redis, self.namespace)
        return held[1]

    def _hold(self, partition: int, checkpoint: int, state: ProjectionState) -> None:
        if state.documents_held > HELD_DOCS_PER_PARTITION:
            state.forget_oldest(HELD_DOCS_PER_PARTITION // 2)
        mine = (self.store.log_id, self.namespace)
        for held in [k for k in _HELD if k[:2] != mine and k[1].startswith(self.keys.namespace_root)]:
            del _HELD[held]  # a generation or a log no longer read: its documents will not serve again
        _HELD[(*mine, partition)] = (checkpoint, state)


# Per process: each partition's documents as last committed by this process, and the checkpoint committed
# with them, by log (a log restored into the same Redis may reach the same checkpoints) and namespace.
# Workers run jobs in-process (``SuiteWorker``), so a partition's next batch needs not read and decode again
# the documents its previous batch wrote.
_HELD: dict[tuple[str, str, int], tuple[int, ProjectionState]] = {}
HELD_DOCS_PER_PARTITION = 2_000  # a few KB each: at most ~300 MB for one projection's 16 partitions


def lag(store: EventStore, namespace: str) -> int:
    """How far a read model is behind the log: the largest gap, in log positions, between a partition's
    newest event and the read model's checkpoint there (one round trip)."""
    pipe = store.redis.pipeline(transaction=False)
    for p in range(store.partitions):
        pipe.xrevrange(store.keys.partition(p), "+", "-", count=1)
        pipe.get(ProjectionKeys.checkpoint(namespace, p))
    replies = pipe.execute()
    gaps = [0]
    for newest, checkpoint in zip(replies[::2], replies[1::2], strict=True):
        head = entry_position(stream_entries(newest)[0][0]) if newest else 0
        gaps.append(max(0, head - int(checkpoint or 0)))
    return max(gaps)


def damage(connection: redis.Redis, namespace: str) -> dict[int, str]:
    """Each partition whose batch a commit applied only in part, and what was refused: empty for a sound read model."""
    marked = connection.hgetall(ProjectionKeys.damage(namespace))
    return {int(partition): as_text(what) for partition, what in sorted(marked.items(), key=lambda p: int(p[0]))}


def caught_up(store: EventStore, namespace: str) -> bool:
    return lag(store, namespace) == 0


def active_namespace(connection: redis.Redis, prefix: str, projection: Projection) -> str:
    """The generation readers and workers use now (one GET: a rebuild switches it atomically)."""
    keys = ProjectionKeys(prefix, projection.name)
    generation = int(connection.get(keys.active_generation(projection.version)) or 0)
    return keys.namespace(projection.version, generation)


SETTLE_PASSES = 100  # a worker's settle passes after catching up; marks left over wait for the next
FLUSH_EVERY = 50_000  # events a long replay folds in memory between writes
KEEP_DOCS = 50_000  # documents a long replay holds per read model (~9 KB each); beyond, the first loaded are dropped


def replay(
    store: EventStore,
    projection: Projection,
    namespace: str,
    batch_size: int = 1000,
    until: int | None = None,
    progress: Callable[[int], None] | None = None,
    after: int = 0,
) -> int:
    """Apply the whole log (from ``after`` up to ``until``) in global order, in one process, into ``namespace``.

    This is the definition of a correct projection: any number of partition
    workers must end with exactly the state this produces.
    """
    until = until if until is not None else store.head()
    return replay_into(
        store, [(projection, namespace)], after=after, until=until, progress=progress, batch_size=batch_size
    )


def settle_all(connection: redis.Redis, targets: Sequence[tuple[Projection, str]]) -> None:
    for projection, namespace in targets:
        while projection.settle(connection, namespace):
            pass


def replay_into(
    store: EventStore,
    targets: Sequence[tuple[Projection, str]],
    *,
    until: int,
    after: int = 0,
    partitions: Collection[int] | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 1000,
    flush_every: int | None = None,
    keep_docs: int | None = None,
) -> int:
    """Apply the log to several read models (projection, namespace) in one pass: each event is decoded
    once, and each read model keeps one state for the whole pass that writes behind, so a case's document
    stays folded in memory between batches and is written once per ``flush_every`` events, and a counter
    moved a thousand times is sent once. With ``partitions``, only their events (see ``rebuild``)."""
    flush_every, keep_docs = flush_every or FLUSH_EVERY, keep_docs or KEEP_DOCS
    states = [(projection, ProjectionState(store.redis, namespace)) for projection, namespace in targets]
    applied = unwritten = 0
    batches = store.scan(after, until, partitions, batch_size)
    with frozen_between_batches() as freeze:
        while folded := _fold_next(batches, states, freeze):
            applied, unwritten = applied + folded, unwritten + folded
            if unwritten >= flush_every:
                _write_behind(store.redis, [state for _, state in states], keep_docs)
                unwritten = 0
            if progress:
                progress(folded)
    _write_behind(store.redis, [state for _, state in states], keep_docs)
    if partitions is None:  # the whole log; a share of it (a rebuild process's) is settled by ``rebuild`` after all
        settle_all(store.redis, targets)
    return applied


def _fold_next(
    batches: Iterator[list[RecordedEvent]], states: Sequence[tuple[Projection, ProjectionState]], freeze: bool
) -> int:
    """Read and fold the next batch, with no collection meanwhile (``no_collections``); how many events it held,
    0 at the end."""
    with no_collections(freeze):
        events = next(batches, [])
        for projection, state in states:
            projection.apply(events, state)
        folded = len(events)
        del events  # let go here: leaving the block may already allocate, and so collect
    return folded


def _write_behind(connection: redis.Redis, states: Sequence[ProjectionState], keep_docs: int) -> None:
    """Write what the states hold unwritten (the namespace is not read until it is switched to): once, not again
    on a dropped connection, which would count its increments twice; the rebuild fails instead."""
    write(connection, [command for state in states for command in state.take_writes()])
    for state in states:
        if state.documents_held > keep_docs:
            state.forget_oldest(keep_docs // 2)


def can_fork_readers(connection: redis.Redis) -> bool:
    """Forked processes can share the work only on a Redis server they connect to themselves (not an
    in-process fake)."""
    module: str = connection.connection_pool.connection_class.__module__
    return module.startswith("redis.")


def rebuild(
    store: EventStore,
    projections: Sequence[Projection],
    prefix: str,
    progress: Callable[[int], None] | None = None,
    processes: int = 1,
    until: int | None = None,
) -> dict[str, str]:
    """Build a new generation of read models from the log, then switch readers and workers to it at once.

    Each new generation is built beside the live one; its checkpoints are set to
    the log's head at the start, so events appended meanwhile are projected by
    the workers after the switch. Readers see the old model or the new one,
    never a half-built one. The generation before the previous one is deleted.

    With ``processes`` > 1 the partitions are shared out among forked processes:
    a read model's documents belong to one partition and its shared counters
    change only commutatively, so the result is the in-order replay's (as for
    workers). Returns each read model's new namespace.
    """
    connection = store.redis
    replaced = {
        projection.name: int(
            connection.get(ProjectionKeys(prefix, projection.name).active_generation(projection.version)) or 0
        )
        for projection in projections
    }
    generations = {projection.name: _new_generation(connection, prefix, projection) for projection in projections}
    targets = [
        (
            projection,
            ProjectionKeys(prefix, projection.name).namespace(projection.version, generations[projection.name]),
        )
        for projection in projections
    ]
    head = store.head() if until is None else until
    if processes > 1 and not can_fork_readers(connection):
        raise ValueError("several rebuild processes need a Redis server they can connect to")
    try:
        if processes > 1:
            _replay_in_processes(store, targets, head, processes, progress)
            settle_all(connection, targets)
        else:
            replay_into(store, targets, until=head, progress=progress)
    except BaseException as failure:  # an interrupt too: what was built is no one's
        # What cannot be deleted now (Redis gone) is deleted by the rebuild after next, as any older generation;
        # the failure itself is what the caller hears of.
        with contextlib.suppress(redis.RedisError):
            for projection, _ in targets:
                keys = ProjectionKeys(prefix, projection.name)
                _drop_generation(connection, keys, projection.version, generations[projection.name])
        if isinstance(failure, Exception) and not isinstance(failure, RebuildFailed):
            raise RebuildFailed(f"{type(failure).__name__}: {failure}") from failure
        raise
    overtaken = []
    for projection, namespace in targets:
        keys = ProjectionKeys(prefix, projection.name)
        old = replaced[projection.name]
        checkpoints = {keys.checkpoint(namespace, p): head for p in range(store.partitions)}
        if not _switch(
            connection, keys.active_generation(projection.version), old, generations[projection.name], checkpoints
        ):
            _drop_generation(connection, keys, projection.version, generations[projection.name])
            overtaken.append(projection.name)
            continue
        for generation in range(0, old):  # keep the previous generation for readers still on it
            _drop_generation(connection, keys, projection.version, generation)
    if overtaken:
        raise RebuildOverlapped(
            f"another rebuild of {', '.join(overtaken)} switched while this one ran: kept that one, dropped this one"
        )
    return {projection.name: namespace for projection, namespace in targets}


class RebuildFailed(RuntimeError):
    """A rebuild stopped part way (Redis refused a write, a process failed): nothing was switched, readers and workers
    stay on the generation they had, and what the rebuild had built is deleted."""


class RebuildOverlapped(RuntimeError):
    """Two rebuilds of one read model ran at once: the first to finish is kept, the other is dropped (switching
    back to it would leave readers on a generation the later one had started, then deleted)."""


def _switch(connection: redis.Redis, active: str, expected: int, new: int, checkpoints: dict[str, int]) -> bool:
    """Make ``new`` the active generation, with its checkpoints, only if ``expected`` still is (one transaction)."""
    with connection.pipeline() as pipe:
        try:
            pipe.watch(active)  # type: ignore[no-untyped-call]
            if int(pipe.get(active) or 0) != expected:
                return False
            pipe.multi()
            pipe.mset(checkpoints)
            pipe.set(active, new)
            pipe.execute()
            return True
        except redis.WatchError:
            return False


def _drop_generation(connection: redis.Redis, keys: ProjectionKeys, version: int, generation: int) -> None:
    for key in connection.scan_iter(match=f"{keys.namespace(version, generation)}:*", count=1000):
        connection.delete(key)


def _new_generation(connection: redis.Redis, prefix: str, projection: Projection) -> int:
    keys = ProjectionKeys(prefix, projection.name)
    old = int(connection.get(keys.active_generation(projection.version)) or 0)
    new = int(connection.incr(keys.generations(projection.version)))
    if new <= old:
        new = int(connection.incr(keys.generations(projection.version), old + 1 - new))
    return new


def _replay_in_processes(
    store: EventStore,
    targets: Sequence[tuple[Projection, str]],
    head: int,
    processes: int,
    progress: Callable[[int], None] | None,
) -> None:
    """Each forked process replays every ``processes``-th partition (redis-py gives a forked child its own
    connections); the parent reports their progress and fails if any of them did, with what failed it."""
    context = multiprocessing.get_context("fork")
    applied = context.Value("q", 0)

    def count(n: int) -> None:
        with applied.get_lock():
            applied.value += n

    failures = context.SimpleQueue()

    def run(partitions: list[int]) -> None:
        try:
            replay_into(store, targets, until=head, partitions=partitions, progress=count)
        except Exception as failure:  # told to the parent, which says it once, rather than a traceback per process
            failures.put(f"{type(failure).__name__}: {failure}")
            sys.exit(1)

    children = [
        context.Process(target=run, args=(list(range(store.partitions))[i::processes],), daemon=True)
        for i in range(processes)
    ]
    for child in children:
        child.start()
    reported = 0
    while any(child.is_alive() for child in children):
        time.sleep(0.2)
        if progress and (now := applied.value) > reported:
            progress(now - reported)
            reported = now
    for child in children:
        child.join()
    if failed := [child.exitcode for child in children if child.exitcode != 0]:
        told = []
        while not failures.empty():
            told.append(failures.get())
        raise RebuildFailed("; ".join(told) or f"a rebuild process ended with exit code {failed[0]}")
    if progress and applied.value > reported:
        progress(applied.value - reported)
