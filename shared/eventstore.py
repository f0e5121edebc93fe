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

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from shared.events import EventRegistry, NewEvent, RecordedEvent
from shared.keys import LogKeys
from shared.redis_values import as_text, entry_position, stream_entries

ANY_VERSION = -1
_FIELDS_PER_EVENT = 8

# KEYS: events, position, stream list, event-ids, partition index, idempotency key
# ARGV: expected, stream id, use idempotency (0/1), request fingerprint, idempotency ttl, n,
#       then per event: id, type, schema version, occurred_at, recorded_at, actor, payload, metadata
_APPEND = """
local use_idem = ARGV[3] == '1'
if use_idem then
  local previous = redis.call('GET', KEYS[6])
  if previous then return {'duplicate_key', previous} end
end
local n = tonumber(ARGV[6])
local seen = {'duplicate_events'}
for i = 0, n - 1 do
  local at = redis.call('HGET', KEYS[4], ARGV[7 + i * 8])
  if at then seen[#seen + 1] = at end
end
if #seen == n + 1 then return seen end
if #seen > 1 then return {'partial_duplicate'} end
local version = redis.call('LLEN', KEYS[3])
local expected = tonumber(ARGV[1])
if expected >= 0 and version ~= expected then return {'conflict', tostring(version)} end
local reply = {'ok'}
for i = 0, n - 1 do
  local b = 7 + i * 8
  local pos = redis.call('INCR', KEYS[2])
  local sp = version + i + 1
  redis.call('XADD', KEYS[1], pos .. '-0', 'id', ARGV[b], 'type', ARGV[b + 1], 'v', ARGV[b + 2],
    'stream', ARGV[2], 'sp', sp, 'occurred_at', ARGV[b + 3], 'recorded_at', ARGV[b + 4],
    'actor', ARGV[b + 5], 'payload', ARGV[b + 6], 'meta', ARGV[b + 7])
  redis.call('RPUSH', KEYS[3], pos)
  redis.call('HSET', KEYS[4], ARGV[b], pos .. ':' .. sp)
  redis.call('XADD', KEYS[5], pos .. '-0', 's', ARGV[2])
  reply[#reply + 1] = pos .. ':' .. sp
end
if use_idem then
  redis.call('SET', KEYS[6], ARGV[4] .. '|' .. ARGV[2] .. '|' .. table.concat(reply, ',', 2), 'EX', ARGV[5])
end
return reply
"""


class WrongExpectedVersion(Exception):
    """A stale writer: the stream moved on since it was read."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id} is at version {actual}, not {expected}")
        self.stream_id, self.expected, self.actual = stream_id, expected, actual


class IdempotencyKeyReused(Exception):
    """The same idempotency key came with a different request."""


@dataclass(frozen=True)
class IdempotencyKey:
    scope: str  # e.g. the partner: keys are unique per client, not globally
    key: str
    fingerprint: str  # hash of the request, so a reused key with another body is refused


@dataclass(frozen=True)
class AppendResult:
    stream_id: str
    stream_version: int
    global_positions: tuple[int, ...]
    duplicate: bool  # True when this was a replay of an earlier append


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
        self.partitions = self._agree_partitions(partitions)
        self._idempotency_ttl_s = idempotency_ttl_s
        self._append_script = connection.register_script(_APPEND)

    def _agree_partitions(self, wanted: int) -> int:
        """The partition count is fixed when the log is created; every process uses the stored one."""
        self.redis.hsetnx(self.keys.meta, "partitions", wanted)
        stored = self.redis.hget(self.keys.meta, "partitions")
        return int(stored) if stored is not None else wanted

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
        if not events:
            raise ValueError("nothing to append")
        if any(e.stream_id != stream_id for e in events):
            raise ValueError("all events of one append belong to one stream")
        recorded_at = datetime.now(UTC).isoformat()
        argv: list[Any] = [
            expected_version,
            stream_id,
            "1" if idempotency else "0",
            idempotency.fingerprint if idempotency else "",
            self._idempotency_ttl_s,
            len(events),
        ]
        for event in events:
            name, version, payload = self.registry.dump(event.payload)
            argv += [
                event.event_id,
                name,
                version,
                event.occurred_at.isoformat(),
                recorded_at,
                event.actor,
                json.dumps(payload, separators=(",", ":")),
                json.dumps(event.metadata, separators=(",", ":")),
            ]
        idem_key = (
            self.keys.idempotency(idempotency.scope, idempotency.key) if idempotency else self.keys.meta
        )
        keys = [
            self.keys.events,
            self.keys.position,
            self.keys.stream(stream_id),
            self.keys.event_ids,
            self.keys.partition(partition_of(stream_id, self.partitions)),
            idem_key,
        ]
        reply = [as_text(x) for x in self._append_script(keys=keys, args=argv)]
        outcome, rest = reply[0], reply[1:]
        if outcome == "conflict":
            raise WrongExpectedVersion(stream_id, expected_version, int(rest[0]))
        if outcome == "partial_duplicate":
            raise ValueError("some events of this batch were appended before, others not: nothing written")
        if outcome == "duplicate_key":
            fingerprint, original_stream, positions = rest[0].split("|", 2)
            if idempotency is not None and fingerprint != idempotency.fingerprint:
                raise IdempotencyKeyReused(idempotency.key)
            return _result(original_stream, positions.split(","), duplicate=True)
        return _result(stream_id, rest, duplicate=outcome == "duplicate_events")

    # -- reading ---------------------------------------------------------------------------------

    def head(self) -> int:
        """The global position of the newest event (0 for an empty log)."""
        return int(self.redis.get(self.keys.position) or 0)

    def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events in global order, starting after a position."""
        entries = stream_entries(self.redis.xrange(self.keys.events, f"{after + 1}-0", "+", count=limit))
        return [self._decode(entry_id, fields) for entry_id, fields in entries]

    def read_stream(self, stream_id: str) -> list[RecordedEvent]:
        positions = [int(p) for p in self.redis.lrange(self.keys.stream(stream_id), 0, -1)]
        return self._fetch(positions)

    def stream_version(self, stream_id: str) -> int:
        return int(self.redis.llen(self.keys.stream(stream_id)))

    def read_partition(self, partition: int, after: int, limit: int) -> list[RecordedEvent]:
        """The events of one partition after a global position, in global order."""
        index = stream_entries(
            self.redis.xrange(self.keys.partition(partition), f"{after + 1}-0", "+", count=limit)
        )
        return self._fetch([entry_position(entry_id) for entry_id, _ in index])

    def partition_head(self, partition: int) -> int:
        newest = stream_entries(self.redis.xrevrange(self.keys.partition(partition), "+", "-", count=1))
        return entry_position(newest[0][0]) if newest else 0

    def _fetch(self, positions: Sequence[int]) -> list[RecordedEvent]:
        pipe = self.redis.pipeline(transaction=False)
        for position in positions:
            pipe.xrange(self.keys.events, f"{position}-0", f"{position}-0")
        return [self._decode(*stream_entries(entries)[0]) for entries in pipe.execute()]

    def _decode(self, entry_id: bytes | str, raw: dict[Any, Any]) -> RecordedEvent:
        f = {as_text(k): as_text(v) for k, v in raw.items()}
        return RecordedEvent(
            event_id=f["id"],
            event_type=f["type"],
            schema_version=self.registry.current_version(f["type"]),
            stream_id=f["stream"],
            stream_position=int(f["sp"]),
            global_position=entry_position(entry_id),
            occurred_at=datetime.fromisoformat(f["occurred_at"]),
            recorded_at=datetime.fromisoformat(f["recorded_at"]),
            actor=f["actor"],
            payload=self.registry.load(f["type"], int(f["v"]), json.loads(f["payload"])),
            metadata=json.loads(f["meta"]),
        )


def _result(stream_id: str, pairs: Sequence[str], *, duplicate: bool) -> AppendResult:
    split = [pair.split(":") for pair in pairs]
    return AppendResult(
        stream_id=stream_id,
        stream_version=int(split[-1][1]),
        global_positions=tuple(int(pos) for pos, _ in split),
        duplicate=duplicate,
    )
