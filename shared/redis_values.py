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
