"""Turning what redis-py returns (bytes, since RQ needs a bytes connection) into Python values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import hiredis
import redis

StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]
# An entry's fields as the server sends them (name, value, name, value, ...): what Lua's XRANGE returns, and
# redis-py's when its parsing is left out (see ``unparsed``).
StoredFields = list[bytes]
StoredEntries = list[tuple[bytes, StoredFields]]
# A command as sent: its name and arguments (what ``hiredis.pack_command`` takes).
Command = tuple[str | bytes | int | float, ...]


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


def round_trip(connection: redis.Redis, commands: Sequence[Command], repeatable: bool = True) -> list[Any]:
    """Commands written to the server at once and their replies read in order, on a connection of the client's
    pool and with its retries: a pipeline, packed by hiredis in C. redis-py's own pipeline encodes each argument
    in Python, and a referral's append has 44 of them: a tenth of a referral's instructions went to its pipeline
    (docs/benchmarks.md, intake). Replies are as the server sent them, with no redis-py response callback; an
    error reply is returned in its place, not raised, as by a pipeline's ``execute(raise_on_error=False)``.

    Sent again whole on a dropped connection or a timeout, as redis-py's pipeline is, so each command must be
    harmless repeated; unless not ``repeatable`` (an increment), when the connection's error is raised."""
    data = packed(commands)
    pool = connection.connection_pool
    client: Any = pool.get_connection()  # redis-py leaves its connections' methods untyped

    def send_and_read() -> list[Any]:
        client.send_packed_command(data)
        return [_reply(client) for _ in commands]

    try:
        if not repeatable:
            return send_and_read()
        replies: list[Any] = client.retry.call_with_retry(send_and_read, lambda _: client.disconnect())
        return replies
    except BaseException:
        client.disconnect()  # replies may be left unread on it: never hand it to the next command
        raise
    finally:
        pool.release(client)


def write(connection: redis.Redis, commands: Sequence[Command]) -> None:
    """Commands sent once (``round_trip``, not ``repeatable``), the first error reply raised once all are read."""
    if commands:
        raise_first_error(round_trip(connection, commands, repeatable=False))


def raise_first_error(replies: Sequence[Any]) -> None:
    """Raise the first error reply among replies read whole (a round trip's, or a transaction's EXEC)."""
    if error := next((reply for reply in replies if isinstance(reply, redis.ResponseError)), None):
        raise error


_JOINED_UP_TO = 64 * 1024  # bytes of packed commands joined into one item


def packed(commands: Sequence[Command]) -> list[bytes]:
    """Commands as sent on the wire (``send_packed_command``'s argument: one ``sendall`` per item), packed by
    hiredis. Small ones are joined into items of up to 64 KB (a referral's two make one system call); one larger
    (a rebuild's write-behind, tens of MB of documents in one MSET) is an item of its own, not copied again."""
    items: list[bytes] = []
    joined: list[bytes] = []
    size = 0
    for command in commands:
        piece: bytes = hiredis.pack_command(command)  # type: ignore[arg-type]  # typed as one item; takes any number
        if joined and size + len(piece) > _JOINED_UP_TO:
            items.append(b"".join(joined))
            joined, size = [], 0
        if len(piece) > _JOINED_UP_TO:
            items.append(piece)
        else:
            joined.append(piece)
            size += len(piece)
    return [*items, b"".join(joined)] if joined else items


def _reply(client: Any) -> Any:
    try:
        return client.read_response()
    except redis.ResponseError as error:  # an error reply: the rest are still to be read
        return error
