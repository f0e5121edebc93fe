"""Turning what redis-py returns (bytes, since RQ needs a bytes connection) into Python values."""

from __future__ import annotations

from typing import Any, cast

StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


def as_text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def stream_entries(reply: Any) -> StreamEntries:
    """XRANGE/XREVRANGE replies, typed."""
    return cast(StreamEntries, reply)


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
