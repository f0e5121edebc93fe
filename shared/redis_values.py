"""Turning what redis-py returns (bytes, since RQ needs a bytes connection) into Python values."""

from __future__ import annotations

from typing import Any, cast

import redis

StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]
# An entry's fields as the server sends them (name, value, name, value, ...): what Lua's XRANGE returns, and
# redis-py's when its parsing is left out (see ``unparsed``).
StoredFields = list[bytes]
StoredEntries = list[tuple[bytes, StoredFields]]


def as_text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def stream_entries(reply: Any) -> StreamEntries:
    """XRANGE/XREVRANGE replies, typed."""
    return cast(StreamEntries, reply)


def stored_entries(reply: Any) -> StoredEntries:
    """XRANGE replies as the server sent them (from a client made by ``unparsed``), typed."""
    return cast(StoredEntries, reply)


def field_pairs(stored: StoredFields) -> dict[bytes, bytes]:
    """An entry's fields as the server sends them, as the dict redis-py's XRANGE gives."""
    return dict(zip(stored[::2], stored[1::2], strict=True))


def unparsed(connection: redis.Redis, *commands: str) -> redis.Redis:
    """A client on the same connections whose replies to ``commands`` are left as the server sent them: redis-py
    turns each stream entry's fields into a dict, which cost a caseflow worker a tenth of its time, and the log's
    reader takes the fields in the order they are stored in anyway."""
    client = redis.Redis(connection_pool=connection.connection_pool)
    for command in commands:
        client.response_callbacks.pop(command, None)
    return client


def entry_position(entry_id: bytes | str) -> int:
    """Log and partition entries have id ``<global position>-0``."""
    return int(as_text(entry_id).split("-", 1)[0])


def load_script(connection: Any, source: str) -> Any:
    """Register a Lua script and load it now, so the first call does not meet NOSCRIPT.

    (redis-py would recover from NOSCRIPT by loading it, but the embedded store
    drops the connection after any error reply, which made the first append of
    a fresh process fail now and then.)
    """
    script = connection.register_script(source)
    connection.script_load(source)
    return script
