"""The event log in Redis: the single source of truth.

Layout (see ``shared.keys``): a Redis Stream holds every event with entry id
``<global position>-0``; a list per stream holds that stream's global
positions; a hash maps event ids to positions; one index stream per partition
lists the positions of the streams that hash to it.

Appends run as one Lua script rather than MULTI/WATCH: the version check, the
idempotency checks and all writes happen atomically in a single round trip,
and a contended stream costs the losing writer one call that tells it the
current version, not a retry loop.
"""

from __future__ import annotations

import contextlib
import functools
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

import orjson
import redis

from shared.events import EventRegistry, NewEvent, RecordedEvent
from shared.events.envelope import danish_date
from shared.ids import random_hex
from shared.keys import LogKeys
from shared.redis_values import (
    Command,
    StoredEntries,
    StoredFields,
    as_text,
    entry_position,
    field_pairs,
    load_script,
    raise_first_error,
    round_trip,
    stored_entries,
    stream_entries,
    unparsed,
)

ANY_VERSION = -1
# A stored event's fields, in the order the append writes them (and an import, ``shared.backup``): the reader
# takes them by place when they are so, by name when not (a log imported before 2026-12-07 has them in the order
# of their names).
STORED_FIELDS = ("id", "type", "v", "stream", "sp", "occurred_at", "recorded_at", "actor", "payload", "meta")
_STORED_NAMES = [name.encode() for name in STORED_FIELDS]
Alongside = Command  # sent before an append in its round trip; its reply is the server's, as sent

# KEYS: position, event-ids, idempotency key, then per stream: its position list, its partition's stream,
#       then flags to set (NX, with a TTL) when events are written, then the position lists of streams observed,
#       then the log's meta
# ARGV: use idempotency (0/1), request fingerprint, idempotency ttl, number of streams k,
#       then per stream: stream id, expected version, number of events,
#       then per event, streams in order: id, type, schema version, occurred_at, recorded_at, actor, payload, meta,
#       then the flags' TTL, then the number of streams observed
# Returns 'restoring' while an import holds the log (see ``shared.backup``). Else 'ok', each event's
# "position:stream position", the flags it set (space-separated), the version of each stream written or
# read-checked and of each observed, as the append left them (space-separated), and the log's identity.
_APPEND = """
if redis.call('HEXISTS', KEYS[#KEYS], 'restoring') == 1 then return {'restoring'} end
local use_idem = ARGV[1] == '1'
if use_idem then
  local previous = redis.call('GET', KEYS[3])
  if previous then return {'duplicate_key', previous} end
end
local k = tonumber(ARGV[4])
local base = 4 + k * 3
local total = 0
for j = 0, k - 1 do total = total + tonumber(ARGV[4 + j * 3 + 3]) end
local seen = {'duplicate_events'}
for i = 0, total - 1 do
  local at = redis.call('HGET', KEYS[2], ARGV[base + 1 + i * 8])
  if at then seen[#seen + 1] = at end
end
if #seen == total + 1 then return seen end
if #seen > 1 then return {'partial_duplicate'} end
local versions = {}
for j = 0, k - 1 do
  local version = redis.call('LLEN', KEYS[4 + j * 2])
  local expected = tonumber(ARGV[4 + j * 3 + 2])
  if expected >= 0 and version ~= expected then return {'conflict', ARGV[4 + j * 3 + 1], tostring(version)} end
  versions[j + 1] = version
end
local reply = {'ok'}
local summary = {}
local e = 0
for j = 0, k - 1 do
  local stream = ARGV[4 + j * 3 + 1]
  local n = tonumber(ARGV[4 + j * 3 + 3])
  summary[#summary + 1] = stream .. ':' .. n
  for i = 0, n - 1 do
    local b = base + 1 + e * 8
    local pos = redis.call('INCR', KEYS[1])
    local sp = versions[j + 1] + i + 1
    redis.call('XADD', KEYS[5 + j * 2], pos .. '-0', 'id', ARGV[b], 'type', ARGV[b + 1], 'v', ARGV[b + 2],
      'stream', stream, 'sp', sp, 'occurred_at', ARGV[b + 3], 'recorded_at', ARGV[b + 4],
      'actor', ARGV[b + 5], 'payload', ARGV[b + 6], 'meta', ARGV[b + 7])
    redis.call('RPUSH', KEYS[4 + j * 2], pos)
    redis.call('HSET', KEYS[2], ARGV[b], pos .. ':' .. sp)
    reply[#reply + 1] = pos .. ':' .. sp
    e = e + 1
  end
end
if use_idem then
  redis.call('SET', KEYS[3], ARGV[2] .. '|' .. table.concat(summary, ',') .. '|' .. table.concat(reply, ',', 2),
    'EX', ARGV[3])
end
local observed = tonumber(ARGV[#ARGV])
local flagged = {}
for f = 4 + k * 2, #KEYS - observed - 1 do
  if redis.call('SET', KEYS[f], '1', 'NX', 'EX', ARGV[#ARGV - 1]) then flagged[#flagged + 1] = KEYS[f] end
end
reply[#reply + 1] = table.concat(flagged, ' ')
local after = {}
for j = 0, k - 1 do after[j + 1] = versions[j + 1] + tonumber(ARGV[4 + j * 3 + 3]) end
for f = #KEYS - observed, #KEYS - 1 do after[#after + 1] = redis.call('LLEN', KEYS[f]) end
reply[#reply + 1] = table.concat(after, ' ')
reply[#reply + 1] = redis.call('HGET', KEYS[#KEYS], 'log_id') or ''
return reply
"""

# Reading a stream: its events at its list of positions in one call, one round trip rather than one per event.
# KEYS: the stream's partition's stream, the stream's position list, the log's meta. ARGV: from index (0-based).
# Returns the log's identity, then the stream's events from that index on.
_READ_STREAM = """
local out = {redis.call('HGET', KEYS[3], 'log_id') or ''}
for i, pos in ipairs(redis.call('LRANGE', KEYS[2], ARGV[1], ARGV[2] or -1)) do
  out[i + 1] = redis.call('XRANGE', KEYS[1], pos .. '-0', pos .. '-0')[1]
end
return out
"""


class WrongExpectedVersion(Exception):
    """A stale writer: the stream moved on since it was read."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id} is at version {actual}, not {expected}")
        self.stream_id, self.expected, self.actual = stream_id, expected, actual


class EarlierLayout(RuntimeError):
    """A log written by an earlier version of the store, which kept every event in one global stream."""


class PartialDuplicate(ValueError):
    """Some events of a batch were appended before and others not: nothing is written. A writer that decided
    the same first events on an older state meets it (two schedulers' runs on different dates); it decides again
    on the log as it is now."""


class LogRestoring(Exception):
    """An import is restoring the log (or one was interrupted): nothing may be appended until it has finished,
    or an append would take a position the import is about to write."""


class IdempotencyKeyReused(Exception):
    """The same idempotency key came with a different request."""


@dataclass(frozen=True)
class IdempotencyKey:
    scope: str  # e.g. the partner: keys are unique per client, not globally
    key: str
    fingerprint: str  # hash of the request, so a reused key with another body is refused


@dataclass(frozen=True)
class StreamWrite:
    """Events for one stream, and the version the writer read it at.

    With no events it is a read-check: the append goes through only if the
    stream is still at ``expected_version`` (e.g. the programme whose capacity
    an assignment relied on).
    """

    stream_id: str
    events: Sequence[NewEvent]
    expected_version: int = ANY_VERSION


@dataclass(frozen=True)
class AppendResult:
    stream_versions: dict[str, int]  # each written stream's version after the append, in write order
    global_positions: tuple[int, ...]
    duplicate: bool  # True when this was a replay of an earlier append
    # The global positions of each written stream's events: an answer names those of its own stream only, since
    # which other streams an append also wrote can tell what the caller may not know (a CPR number's link).
    positions_by_stream: dict[str, tuple[int, ...]] = field(default_factory=dict)
    flags_set: tuple[str, ...] = ()  # of the append's flags, those it set (they were not set already)
    # Every stream written, read-checked or observed, at its version the instant the append was made (empty
    # for a replay): a fold held at that version is the stream as the append left it, with nothing to read.
    versions_at_append: dict[str, int] = field(default_factory=dict)
    log_id: str = ""  # the identity of the log appended to (empty for a replay)
    alongside: tuple[Any, ...] = ()  # the replies to the commands sent with the append

    @property
    def stream_id(self) -> str:
        """The first stream written: the one a command is about."""
        return next(iter(self.stream_versions))

    @property
    def stream_version(self) -> int:
        return self.stream_versions[self.stream_id]

    @property
    def positions(self) -> tuple[int, ...]:
        """The global positions of the events written to the first stream: the command's own."""
        return self.positions_by_stream.get(self.stream_id, ())


@dataclass(frozen=True)
class Streams:
    """What ``read_streams`` read: the log's identity, and per stream the events asked for."""

    log_id: str
    events: dict[str, list[RecordedEvent]]


def partition_of(stream_id: str, partitions: int) -> int:
    """Stable across processes and Python versions (unlike ``hash``)."""
    return zlib.crc32(stream_id.encode()) % partitions


class EventStore:
    def __init__(
        self,
        connection: redis.Redis,
        registry: EventRegistry,
        *,
        prefix: str = "cf",
        partitions: int = 16,
        idempotency_ttl_s: int = 7 * 24 * 3600,
    ) -> None:
        self.redis = connection
        self.registry = registry
        self.keys = LogKeys(prefix)
        self.partitions, self.log_id = self._agree(partitions)
        self._idempotency_ttl_s = idempotency_ttl_s
        self._log_reader = unparsed(connection, "XRANGE")  # decoded from the stored fields: see ``_decode``
        self._append_script = load_script(connection, _APPEND)
        self._read_stream = load_script(connection, _READ_STREAM)

    def _agree(self, wanted: int) -> tuple[int, str]:
        """The partition count and the log's identity are fixed when the log is created; every process uses
        the stored ones. The identity tells state a process holds (``Folds``, a runner's held documents)
        from state of another log restored into the same Redis."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(self.keys.layout_1_events)
        pipe.hsetnx(self.keys.meta, "partitions", wanted)
        pipe.hsetnx(self.keys.meta, "log_id", random_hex())
        pipe.hmget(self.keys.meta, "partitions", "log_id")
        earlier, _, _, (partitions, log_id) = pipe.execute()
        if earlier:
            raise EarlierLayout(
                "this log has an earlier version's layout (one global stream): export it with that version "
                "(log export) and import the file here (log import)"
            )
        return int(partitions), as_text(log_id)

    # -- writing ---------------------------------------------------------------------------------

    def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int = ANY_VERSION,
        idempotency: IdempotencyKey | None = None,
    ) -> AppendResult:
        """Append events to one stream atomically, or raise ``WrongExpectedVersion``."""
        return self.append_many([StreamWrite(stream_id, events, expected_version)], idempotency=idempotency)

    def append_many(
        self,
        writes: Sequence[StreamWrite],
        *,
        idempotency: IdempotencyKey | None = None,
        flags: Sequence[str] = (),
        flag_ttl_s: int = 60,
        observe: Sequence[str] = (),
        alongside: Sequence[Alongside] = (),
    ) -> AppendResult:
        """Append to several streams at once: every expected version holds and all is written, or nothing is.

        ``flags`` (keys under the log's hash tag) are set with the events, if not set already, in the same
        script: how an append nudges the projections without a round trip of its own. ``observe`` names
        streams whose versions the result reports as the append left them (with those written and
        read-checked), so an answer can be given from folds held at those versions without reading the log
        again. ``alongside``: commands queued before the append in its round trip, each by a function given
        the pipeline (the vault's key for a new citizen); they take effect even if the append is refused,
        and may be sent twice, so each must be harmless alone and when repeated."""
        streams = [w.stream_id for w in writes]
        if not any(w.events for w in writes) or len(set(streams)) != len(streams):
            raise ValueError("each write names a different stream, and some write has events")
        if any(not w.events and w.expected_version == ANY_VERSION for w in writes):
            raise ValueError("a read-check needs an expected version")
        if any(e.stream_id != w.stream_id for w in writes for e in w.events):
            raise ValueError("an event must be written to its own stream")
        recorded_at = datetime.now(UTC).isoformat()
        idem_key = self.keys.idempotency(idempotency.scope, idempotency.key) if idempotency else self.keys.meta
        keys = [self.keys.position, self.keys.event_ids, idem_key]
        argv: list[Any] = [
            "1" if idempotency else "0",
            idempotency.fingerprint if idempotency else "",
            self._idempotency_ttl_s,
            len(writes),
        ]
        for write in writes:
            argv += [write.stream_id, write.expected_version, len(write.events)]
            keys += [
                self.keys.stream(write.stream_id),
                self.keys.partition(partition_of(write.stream_id, self.partitions)),
            ]
        for event in (e for w in writes for e in w.events):
            name, version, payload = self.registry.encode(event.payload)
            argv += [
                event.event_id,
                name,
                version,
                event.occurred_at.isoformat(),
                recorded_at,
                event.actor,
                payload,
                orjson.dumps(event.metadata),
            ]
        keys += flags
        keys += [self.keys.stream(stream_id) for stream_id in observe]
        keys.append(self.keys.meta)
        argv += [flag_ttl_s, len(observe)]
        replies = self._pipelined(self._append_script, [(keys, argv)], before=alongside)  # alongside first
        reply = [as_text(x) for x in replies[-1]]
        outcome, rest = reply[0], reply[1:]
        if outcome == "restoring":
            raise LogRestoring("the event log is being restored from a backup; nothing can be written until then")
        if outcome == "conflict":
            stream, actual = rest[0], int(rest[1])
            expected = next(w.expected_version for w in writes if w.stream_id == stream)
            raise WrongExpectedVersion(stream, expected, actual)
        if outcome == "partial_duplicate":
            raise PartialDuplicate("some events of this batch were appended before, others not: nothing written")
        if outcome == "duplicate_key":
            assert idempotency is not None
            return _replayed(rest[0], idempotency)
        counts = [(w.stream_id, len(w.events)) for w in writes]
        if outcome == "duplicate_events":
            return _result(counts, rest, duplicate=True)
        result = _result(counts, rest[:-3], duplicate=False)
        return replace(
            result,
            flags_set=tuple(rest[-3].split()),
            versions_at_append=dict(zip([*streams, *observe], map(int, rest[-2].split()), strict=True)),
            log_id=rest[-1],
            alongside=tuple(replies[:-1]),
        )

    def replay(self, idempotency: IdempotencyKey) -> AppendResult | None:
        """The result of the append this idempotency key was first sent with, if any (``IdempotencyKeyReused``
        if it came with another request). The append itself checks the key too; this is for a command whose
        decision would be refused if taken again (a second enrolment), so its retry is answered before."""
        recorded = self.redis.get(self.keys.idempotency(idempotency.scope, idempotency.key))
        return _replayed(as_text(recorded), idempotency) if recorded is not None else None

    # -- reading ---------------------------------------------------------------------------------

    def head(self) -> int:
        """The global position of the newest event (0 for an empty log)."""
        return int(self.redis.get(self.keys.position) or 0)

    def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events in global order, starting after a position."""
        entries: StoredEntries = []
        for batch in self.scan_stored(after, self.head(), batch_size=limit):
            entries += batch[: limit - len(entries)]
            if len(entries) == limit:
                break
        return [self._decode(entry_id, fields) for entry_id, fields in entries]

    def scan(
        self, after: int, until: int, partitions: Collection[int] | None = None, batch_size: int = 1000
    ) -> Iterator[list[RecordedEvent]]:
        """The log from ``after`` to ``until`` in global order, in batches; with ``partitions``, only theirs."""
        for entries in self.scan_stored(after, until, partitions, batch_size):
            yield [self._decode(entry_id, fields) for entry_id, fields in entries]

    def scan_stored(
        self, after: int, until: int | None, partitions: Collection[int] | None = None, batch_size: int = 1000
    ) -> Iterator[StoredEntries]:
        """The log's entries as stored (each one's fields as the server sends them), in global order: the
        partitions' streams merged by position, each entry read once (``until`` None: whatever the streams held
        when the scan began, even beyond the head).

        The merge needs an end fixed at the start: a partition read to its end is not read again, so an event
        appended to it later would be skipped while a later one in another partition was not."""
        if until is None:
            until = self._newest_stored(range(self.partitions) if partitions is None else partitions)
        end, last = f"{until}-0", until
        cursors = {p: after for p in (range(self.partitions) if partitions is None else partitions)}
        buffers: dict[int, StoredEntries] = {p: [] for p in cursors}
        unread = set(cursors)  # partitions that may hold events up to ``until`` not fetched yet
        while unread or any(buffers.values()):
            refill = sorted(p for p in unread if not buffers[p])
            pipe = self._log_reader.pipeline(transaction=False)
            for p in refill:
                pipe.xrange(self.keys.partition(p), f"{cursors[p] + 1}-0", end, count=batch_size)
            for p, entries in zip(refill, pipe.execute() if refill else [], strict=True):
                if len(entries) < batch_size:
                    unread.discard(p)
                if entries:
                    buffers[p] = stored_entries(entries)
                    cursors[p] = entry_position(entries[-1][0])
            # Every event up to the lowest position fetched from a partition not read to the end is in hand.
            bound = min((cursors[p] for p in unread), default=last)
            ready: list[tuple[int, bytes, StoredFields]] = []
            for p, entries in buffers.items():
                taken = 0
                while taken < len(entries) and (position := entry_position(entries[taken][0])) <= bound:
                    ready.append((position, *entries[taken]))
                    taken += 1
                buffers[p] = entries[taken:]
            if ready:
                ready.sort(key=lambda entry: entry[0])
                yield [(entry_id, fields) for _, entry_id, fields in ready]

    def _newest_stored(self, partitions: Collection[int]) -> int:
        """The highest position any of these partitions' streams holds (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        for p in partitions:
            pipe.xrevrange(self.keys.partition(p), "+", "-", count=1)
        return max((entry_position(stream_entries(newest)[0][0]) for newest in pipe.execute() if newest), default=0)

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        """A stream's events in order; only those after ``after_version`` when the reader has the rest."""
        return self.read_streams({stream_id: after_version}).events[stream_id]

    def first_events(self, stream_ids: Iterable[str]) -> dict[str, RecordedEvent]:
        """Each stream's first event (who made it, and when), read without the rest; none for an empty stream."""
        ids = list(stream_ids)
        if not ids:
            return {}
        streams = self.read_streams(dict.fromkeys(ids, 0), limit=1).events
        return {stream_id: events[0] for stream_id, events in streams.items() if events}

    def read_streams(self, after_versions: Mapping[str, int], limit: int | None = None) -> Streams:
        """Several streams' events after known versions (at most ``limit`` of each), in one round trip; with the
        log's identity, so a reader holding state of another log (one restored into this Redis, or a flushed
        store) can tell."""
        if limit is not None and limit < 1:
            raise ValueError(f"a limit of {limit} events reads nothing")
        calls = [
            (
                [self.keys.partition(partition_of(s, self.partitions)), self.keys.stream(s), self.keys.meta],
                [after] if limit is None else [after, after + limit - 1],
            )
            for s, after in after_versions.items()
        ]
        replies = self._pipelined(self._read_stream, calls)
        return Streams(
            as_text(replies[0][0]),
            {
                stream_id: [self._decode(entry_id, fields) for entry_id, fields in entries]
                for stream_id, (_, *entries) in zip(after_versions, replies, strict=True)
            },
        )

    def _pipelined(
        self, script: Any, calls: Sequence[tuple[list[str], list[Any]]], before: Sequence[Command] = ()
    ) -> list[Any]:
        """The commands ``before``, then the script once per call, in one round trip (``round_trip``): EVALSHA
        alone (redis-py's script object would first ask SCRIPT EXISTS, a round trip of its own). A server that
        forgot the script (a restart) gets it loaded and everything sent again, so what goes before must be
        harmless repeated. An error reply is raised, once every reply is read."""
        commands = [*before, *(("EVALSHA", script.sha, len(keys), *keys, *args) for keys, args in calls)]
        replies = round_trip(self.redis, commands)
        if any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies):
            self.redis.script_load(script.script)
            replies = round_trip(self.redis, commands)
        raise_first_error(replies)
        return replies

    def stream_version(self, stream_id: str) -> int:
        return int(self.redis.llen(self.keys.stream(stream_id)))

    def stream_versions(self, stream_ids: Iterable[str]) -> dict[str, int]:
        """Several streams' versions in one round trip (0 for a stream with no events)."""
        pipe = self.redis.pipeline(transaction=False)
        ids = list(dict.fromkeys(stream_ids))
        for stream_id in ids:
            pipe.llen(self.keys.stream(stream_id))
        return dict(zip(ids, (int(n) for n in pipe.execute()), strict=True)) if ids else {}

    def read_partition(self, partition: int, after: int, limit: int) -> list[RecordedEvent]:
        """The events of one partition after a global position, in global order: one XRANGE."""
        return self.decode(self.read_partition_stored(partition, after, limit))

    def read_partition_stored(self, partition: int, after: int, limit: int) -> StoredEntries:
        """``read_partition``'s entries as stored, not yet decoded."""
        command = self._partition_read(partition, after, limit)
        return stored_entries(self._log_reader.execute_command(*command))  # type: ignore[no-untyped-call]

    def _partition_read(self, partition: int, after: int, limit: int) -> tuple[str | int, ...]:
        return ("XRANGE", self.keys.partition(partition), f"{after + 1}-0", "+", "COUNT", limit)

    def decode(self, entries: StoredEntries) -> list[RecordedEvent]:
        """Stored entries (``scan_stored``, ``read_partition_stored``) as events."""
        return [self._decode(entry_id, fields) for entry_id, fields in entries]

    def read_partition_ahead(self, partition: int, after: int, limit: int) -> ReadAhead:
        """``read_partition_stored``, sent now and its reply taken later (``ReadAhead.stored``), on a connection of
        its own: the server reads a worker's next batch while the worker folds this one, time it otherwise spent
        waiting. Entries up to a position never change, so a read sent early is one made at that moment."""
        pool = self._log_reader.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_command(*self._partition_read(partition, after, limit))  # type: ignore[no-untyped-call]
        except BaseException:
            connection.disconnect()  # type: ignore[no-untyped-call]
            pool.release(connection)
            raise
        return ReadAhead(partition, after, connection, pool)

    def partition_head(self, partition: int) -> int:
        newest = stream_entries(self.redis.xrevrange(self.keys.partition(partition), "+", "-", count=1))
        return entry_position(newest[0][0]) if newest else 0

    def _decode(self, entry_id: bytes, stored: StoredFields) -> RecordedEvent:
        """An event from its entry's fields as stored (name, value, ...), taken by place."""
        values = stored[1::2] if stored[::2] == _STORED_NAMES else _in_stored_order(stored)
        event_id, type_name, version, stream_id, position, occurred, recorded, actor, payload, meta = values
        event_type = self.registry.event_type(type_name.decode())
        occurred_at, occurred_on = _instant(occurred)
        return RecordedEvent.from_log(
            {
                "event_type": event_type.name,
                "schema_version": event_type.version,
                "stream_id": stream_id.decode(),
                "stream_position": int(position),
                "global_position": int(entry_id.partition(b"-")[0]),
                "occurred_at": occurred_at,
                "payload": self.registry.load_type(event_type, int(version), payload),
                "occurred_on": occurred_on,
                "_deferred": (_deferred_fields, event_id, recorded, actor, meta),
            }
        )


@functools.lru_cache(maxsize=4096)
def _instant(stored: bytes) -> tuple[datetime, date]:
    """An event's instant and its Danish date, worked out once per distinct stored value: commands record the
    start of the day they are dated, so a log holds a few instants a day, each read thousands of times (the
    date's time zone conversion cost as much as the rest of an envelope). Both are immutable, so shared."""
    instant = datetime.fromisoformat(stored.decode())
    return instant, danish_date(instant)


def _deferred_fields(event_id: bytes, recorded: bytes, actor: bytes, meta: bytes) -> dict[str, Any]:
    """The envelope fields an event read from the log decodes when first asked (``envelope.DEFERRED``)."""
    return {
        "event_id": event_id.decode(),
        "recorded_at": datetime.fromisoformat(recorded.decode()),
        "actor": actor.decode(),
        "metadata": orjson.loads(meta) if meta != b"{}" else {},
    }


def _in_stored_order(stored: StoredFields) -> list[bytes]:
    """An entry's values in ``STORED_FIELDS``' order (one of them missing: KeyError, a log written by other code)."""
    named = field_pairs(stored)
    return [named[name] for name in _STORED_NAMES]


def _replayed(recorded: str, idempotency: IdempotencyKey) -> AppendResult:
    """The result an idempotency key's first append recorded (``fingerprint|stream:n,...|position:sp,...``)."""
    fingerprint, summary, positions = recorded.split("|", 2)
    if fingerprint != idempotency.fingerprint:
        raise IdempotencyKeyReused(idempotency.key)
    counts = [(s, int(n)) for s, _, n in (part.rpartition(":") for part in summary.split(","))]
    return _result(counts, positions.split(","), duplicate=True)


def _result(counts: Sequence[tuple[str, int]], pairs: Sequence[str], *, duplicate: bool) -> AppendResult:
    """Map the script's ``position:stream position`` pairs back onto the streams, in write order."""
    split = [pair.split(":") for pair in pairs]
    versions, positions, offset = {}, {}, 0
    for stream, n in counts:
        if n:  # read-checks wrote nothing and report no version
            versions[stream] = int(split[offset + n - 1][1])
            positions[stream] = tuple(int(pos) for pos, _ in split[offset : offset + n])
        offset += n
    return AppendResult(versions, tuple(int(pos) for pos, _ in split), duplicate, positions)


class ReadAhead:
    """A partition's read sent ahead (``EventStore.read_partition_ahead``): its entries, taken once; or thrown
    away, which reads the reply all the same, so that its connection can serve again."""

    def __init__(self, partition: int, after: int, connection: Any, pool: Any) -> None:
        self.partition, self.after = partition, after
        self._connection, self._pool = connection, pool

    def stored(self) -> StoredEntries:
        """The entries read, not yet decoded (``EventStore.decode``)."""
        return stored_entries(self._reply())

    def discard(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(redis.RedisError):  # its connection was dropped: nothing is left to read
                self._reply()

    def _reply(self) -> Any:
        connection, self._connection = self._connection, None
        if connection is None:
            raise RuntimeError("a read sent ahead is taken once")
        try:
            return connection.read_response()
        except BaseException:
            connection.disconnect()  # a reply half read would be taken for the next command's
            raise
        finally:
            self._pool.release(connection)
