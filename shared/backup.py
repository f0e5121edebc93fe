"""Exporting the event log to a compressed JSONL file with a checksum, importing it into an empty store,
and verifying a log.

The file holds each event exactly as stored (schema version and payload as
written, never upcast or re-encoded), so a restore is byte-for-byte the log
that was exported; read models are then rebuilt from it. Citizens' keys are
not in the log by design (see ``shared.vault``): back them up separately, and
an erased citizen's data stays erased in every backup.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.eventstore import STORED_FIELDS, EventStore, partition_of
from shared.redis_values import as_text, entry_position, field_pairs

FORMAT = "caseflow-event-log"
BATCH = 1000


class BackupError(Exception):
    pass


def _raw_events(store: EventStore, until: int | None = None) -> Iterator[dict[str, Any]]:
    for entries in store.scan_stored(0, until, batch_size=BATCH):
        for entry_id, fields in entries:
            named = field_pairs(fields)
            yield {"position": entry_position(entry_id)} | {as_text(k): as_text(v) for k, v in named.items()}


def export_log(store: EventStore, path: Path, progress: Callable[[int], None] | None = None) -> tuple[int, str]:
    """Write the whole log to ``path`` (gzip JSONL) and its SHA-256 to ``path.sha256``. Returns (events, digest)."""
    count = 0
    with gzip.open(path, "wb") as out:
        # The log up to its head as read here, whatever is appended while the export runs: the file's header
        # says the head, and an import checks that it restored exactly that many events.
        head = store.head()
        header = {"format": FORMAT, "version": 1, "partitions": store.partitions, "head": head}
        for record in itertools.chain([header], _raw_events(store, until=head)):
            out.write((json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode())
            count += "position" in record
            if progress and "position" in record:
                progress(1)
    digest = _sha256(path, gzip_content=False)
    Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")  # as sha256sum writes it: `sha256sum -c` checks it
    return count, digest


def _sha256(path: Path, *, gzip_content: bool) -> str:
    """The file's digest; or that of its uncompressed lines, which exports before 2026-11-25 wrote."""
    digest = hashlib.sha256()
    with gzip.open(path, "rb") if gzip_content else path.open("rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# KEYS: the log's meta, its position counter. ARGV: the claim (which file). An empty log is claimed for one
# import, atomically: every append refuses while ``restoring`` is set (see ``shared.eventstore``). Returns
# 'claimed', 'in_use', or 'restoring' with the claim an earlier import left and the events it wrote.
_CLAIM = """
local claim = redis.call('HGET', KEYS[1], 'restoring')
if claim then return {'restoring', claim, redis.call('GET', KEYS[2]) or '0'} end
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= 0 then return {'in_use'} end
redis.call('HSET', KEYS[1], 'restoring', ARGV[1])
return {'claimed'}
"""

# KEYS[1], KEYS[2]: the log's meta, its position counter. ARGV[1], ARGV[2]: the claim, the position the import
# has reached. Before an import writes or releases, the claim is still its own and the log ends where it left it.
_STILL_OURS = """
if redis.call('HGET', KEYS[1], 'restoring') ~= ARGV[1] then return 'not_ours' end
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[2]) then return 'moved' end
"""

# KEYS: the log's meta, its position counter, the event-id index, then per event its partition's stream and its
#       stream's position list. ARGV: the claim, the position the batch follows, the number of events, then per
#       event: its position, id, stream position, number of fields, and the fields (name, value, ...).
# Writes the batch only while the claim is this import's and the log ends where it left it: an import that
# hung and woke after the store was emptied and claimed by another, or a second import of the same file, stops
# ('not_ours', 'moved') instead of writing among another's events. Returns 'ok' or why not. (Lua's unpack takes
# some thousands of values: an event has the ten fields the append writes.)
_RESTORE = (
    _STILL_OURS
    + """
local at = 4
for e = 1, tonumber(ARGV[3]) do
  local position, id, sp, n = ARGV[at], ARGV[at + 1], ARGV[at + 2], tonumber(ARGV[at + 3])
  redis.call('XADD', KEYS[2 + 2 * e], position .. '-0', unpack(ARGV, at + 4, at + 3 + 2 * n))
  redis.call('RPUSH', KEYS[3 + 2 * e], position)
  redis.call('HSET', KEYS[3], id, position .. ':' .. sp)
  at = at + 4 + 2 * n
end
redis.call('SET', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[3]))
return 'ok'
"""
)

# KEYS: the log's meta, its position counter. ARGV: the claim, the file's head. The claim is released only by
# the import that holds it, with every event of its file written.
_RELEASE = (
    _STILL_OURS
    + """
redis.call('HDEL', KEYS[1], 'restoring')
return 'ok'
"""
)

START_OVER = "to start over instead, empty the store (every key under the suite's prefix) and import"
STOPPED = {
    "not_ours": "another import holds this store now, or has finished it; this one stops",
    "moved": "another import is writing this log; this one stops",
}


def import_log(store: EventStore, path: Path, progress: Callable[[int], None] | None = None) -> int:
    """Restore an exported log into an empty store, after checking its checksum. Returns events restored.

    The store is claimed first, so nothing is appended while the import writes (an append meanwhile would take
    a position the file holds); it is released only when every event announced is restored. An interrupted
    import leaves it claimed, and refusing every write: a partial log must not take new events. Importing the
    same file again finishes it: each batch is one script, written only while the claim is this file's and
    the log ends where the batch begins, so the store holds the file's first events, and the import goes on
    after them."""
    expected = Path(f"{path}.sha256").read_text().split()[0]
    if expected != _sha256(path, gzip_content=False) and expected != _sha256(path, gzip_content=True):
        raise BackupError("checksum mismatch: the file is damaged or not the one exported")
    with gzip.open(path, "rb") as source:
        header = json.loads(source.readline())
        if header.get("format") != FORMAT:
            raise BackupError("not a caseflow event log export")
        if int(header["partitions"]) != store.partitions:  # the services hold their count from their start
            raise BackupError(
                f"the file's log has {header['partitions']} partitions, this store {store.partitions}: set "
                f"CASEFLOW_PARTITIONS={header['partitions']} for every service and worker, restart them, and import"
            )
        claim = json.dumps({"file": path.name, "sha256": expected}, sort_keys=True)
        outcome, *earlier = (
            as_text(v) for v in store.redis.eval(_CLAIM, 2, store.keys.meta, store.keys.position, claim)
        )
        if outcome == "in_use":
            raise BackupError("the target already holds events: import only into an empty store")
        restored = 0
        if outcome == "restoring":
            restored = int(earlier[1])
            claim = _resumable(earlier[0], claim, path.name, restored)
        records = (json.loads(line) for line in source)
        if restored:
            _check_restored(store, itertools.islice(records, restored), restored)
            if progress:
                progress(restored)
        for batch in _batches(records, BATCH):
            restored += _restore(store, claim, batch, restored)
            if progress:
                progress(len(batch))
    if restored != header["head"]:
        raise BackupError(
            f"the export announced {header['head']} events but held {restored}: the store stays claimed, "
            f"refusing writes; {START_OVER}"
        )
    released = as_text(store.redis.eval(_RELEASE, 2, store.keys.meta, store.keys.position, claim, restored))
    if released != "ok":
        raise BackupError(STOPPED[released])
    return restored


def _resumable(earlier: str, claim: str, file: str, written: int) -> str:
    """The claim an interrupted import of this same file left (an import before claims held checksums claimed
    with the file's name: its events are checked against the file all the same); refuses another file's."""
    if earlier in (claim, file):
        return earlier
    try:
        other = json.loads(earlier)["file"]
    except (ValueError, TypeError, KeyError):
        other = earlier
    raise BackupError(
        f"an import of another file ({other}) holds this store, with {written} events written: if it is not "
        f"running, import that file again to finish it; {START_OVER}"
    )


def _check_restored(store: EventStore, records: Iterator[dict[str, Any]], restored: int) -> None:
    """The store holds the file's first ``restored`` events: its last one is the file's at that position."""
    last = next(iter(collections.deque(records, maxlen=1)), None)
    if last is None or last["position"] != restored:
        raise BackupError(f"the store holds {restored} events, more than the file; {START_OVER}")
    if as_text(store.redis.hget(store.keys.event_ids, last["id"]) or b"") != f"{restored}:{last['sp']}":
        raise BackupError(f"the store's event at position {restored} is not the file's; {START_OVER}")


def _batches(records: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    while batch := list(itertools.islice(records, size)):
        yield batch


def _restore(store: EventStore, claim: str, batch: list[dict[str, Any]], before: int) -> int:
    keys: list[str] = [store.keys.meta, store.keys.position, store.keys.event_ids]
    args: list[str | int] = [claim, before, len(batch)]
    for offset, event in enumerate(batch, start=1):
        position = event.pop("position")
        if position != before + offset:
            raise BackupError(f"positions are not contiguous at {position}: the store stays claimed; {START_OVER}")
        keys += [
            store.keys.partition(partition_of(event["stream"], store.partitions)),
            store.keys.stream(event["stream"]),
        ]
        args += [position, event["id"], event["sp"], len(event)]
        # In the order the append writes them (the file holds them by name): the log's reader takes them by place.
        for name, value in ({name: event[name] for name in STORED_FIELDS if name in event} | event).items():
            args += [name, str(value)]
    outcome = as_text(store.redis.eval(_RESTORE, len(keys), *keys, *args))
    if outcome != "ok":
        raise BackupError(STOPPED[outcome])
    return len(batch)


@dataclass
class Verification:
    events: int
    problems: list[str]


def verify_log(store: EventStore, progress: Callable[[int], None] | None = None) -> Verification:
    """Every event is in the partition its stream hashes to, at a position no other event holds, its stream's
    next event, valid under its schema, and where the event-id index says; every stream's index lists exactly
    its events' positions, and no stream without events has an index; the log holds exactly the positions 1 to
    its head. Read a partition at a time (a stream lives in one), so what is held in memory is one partition's
    positions, a byte per position and the streams' names. The log is checked up to its head when the check
    begins: services may go on appending meanwhile."""
    problems: list[str] = []
    head = store.head()
    held = bytearray(head + 1)  # which positions some event holds
    logged: set[str] = set()  # every stream that has an event
    count = 0
    for partition in range(store.partitions):
        positions: dict[str, list[int]] = {}  # each stream's events' positions, in stream order
        for entries in store.scan_stored(0, head, [partition], batch_size=BATCH):
            indexed: list[tuple[str, str]] = []
            for entry_id, stored in entries:
                count += 1
                raw = {as_text(k): as_text(v) for k, v in field_pairs(stored).items()}
                position, stream, sp = entry_position(entry_id), raw["stream"], int(raw["sp"])
                problems += _placement_problems(store, held, partition, position, stream)
                stream_positions = positions.setdefault(stream, [])
                if sp != len(stream_positions) + 1:
                    problems.append(f"{stream}: event {sp} follows {len(stream_positions)}")
                stream_positions.append(position)
                try:
                    store.registry.load(raw["type"], int(raw["v"]), raw["payload"], validate=True)
                except Exception as e:
                    problems.append(f"position {position}: {type(e).__name__}")
                indexed.append((raw["id"], f"{position}:{sp}"))
            found = store.redis.hmget(store.keys.event_ids, [event_id for event_id, _ in indexed])
            problems += [
                f"event {event_id}: the event-id index says {as_text(at) if at else 'nothing'}, the log {expected}"
                for (event_id, expected), at in zip(indexed, found, strict=True)
                if at is None or as_text(at) != expected
            ]
            if progress:
                progress(len(entries))
        problems += _stream_index_problems(store, positions, head)
        logged.update(positions)
    problems += _indexes_without_events(store, logged, head)
    if missing := [p for p in range(1, head + 1) if not held[p]]:
        problems.append(f"{len(missing)} position(s) up to the head hold no event, the first {missing[0]}")
    pipe = store.redis.pipeline(transaction=True)  # an append writes an id and moves the head at once
    pipe.hlen(store.keys.event_ids)
    pipe.get(store.keys.position)
    ids, now = pipe.execute()
    if ids != int(now or 0):
        problems.append(f"the event-id index holds {ids} ids, the log {int(now or 0)} events")
    return Verification(count, problems)


def _placement_problems(store: EventStore, held: bytearray, partition: int, position: int, stream: str) -> list[str]:
    problems = []
    if partition_of(stream, store.partitions) != partition:
        problems.append(f"position {position}: {stream} is in partition {partition}, not its own")
    if not 1 <= position < len(held):
        problems.append(f"position {position} is beyond the head {len(held) - 1}")
    elif held[position]:
        problems.append(f"position {position} is held by two events")
    else:
        held[position] = 1
    return problems


def _stream_index_problems(store: EventStore, positions: dict[str, list[int]], head: int) -> list[str]:
    """Each stream's index (its list of positions, what reading a stream follows) against its events up to
    the head the check began at (what is appended meanwhile is not checked)."""
    problems = []
    listings = _in_batches(store, [store.keys.stream(s) for s in positions], lambda pipe, key: pipe.lrange(key, 0, -1))
    for stream, listed in zip(positions, listings, strict=True):
        indexed, logged = [int(p) for p in listed if int(p) <= head], positions[stream]
        if indexed != logged:
            pairs = zip(indexed, logged, strict=False)  # the shorter's end is where they differ, if not before
            n = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(indexed), len(logged)))
            problems.append(
                f"{stream}: its index lists {len(indexed)} events, the log {len(logged)}; they differ from "
                f"event {n + 1} on (index: {indexed[n] if n < len(indexed) else 'none'}, "
                f"log: {logged[n] if n < len(logged) else 'none'})"
            )
    return problems


def _indexes_without_events(store: EventStore, logged: set[str], head: int) -> list[str]:
    """An index of a stream that has no event would have the stream read as the events at other streams'
    positions. (One whose positions all lie beyond the head is a stream begun since the check began.)"""
    prefix = store.keys.stream("")
    keys = store.redis.scan_iter(match=f"{prefix}*", count=BATCH)
    unlogged = [key for key in keys if as_text(key)[len(prefix) :] not in logged]
    firsts = _in_batches(store, unlogged, lambda pipe, key: pipe.lindex(key, 0))
    return [
        f"{as_text(key)[len(prefix) :]}: its index lists positions, the log no event of it"
        for key, first in zip(unlogged, firsts, strict=True)
        if first is not None and int(first) <= head
    ]


def _in_batches(store: EventStore, keys: Sequence[Any], command: Callable[[Any, Any], object]) -> list[Any]:
    """One command per key, pipelined a batch at a time; the replies in the keys' order."""
    replies: list[Any] = []
    for start in range(0, len(keys), BATCH):
        pipe = store.redis.pipeline(transaction=False)
        for key in keys[start : start + BATCH]:
            command(pipe, key)
        replies += pipe.execute()
    return replies
