"""A partition run's transactions with Redis: its checkpoint WATCHed, and each batch committed under it.

A batch commits its writes with the partition's new checkpoint in one MULTI/EXEC, under a WATCH on the
checkpoint taken before its documents were read (``shared.projections``): a worker that was overtaken commits
nothing. Here that exchange is split in two, and packed by hiredis in C: ``send_commit`` writes the batch's
transaction and, behind it, the renewal of the worker's lease and the next WATCH and read of the checkpoint;
``committed`` reads their replies. Between the two the worker decodes its next batch while the server applies
this one: a caseflow worker waited for its commits a twentieth of its time, and spent another twentieth in
redis-py encoding their arguments one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis

from shared.redis_values import Command, packed, raise_first_error

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class PartlyCommitted(Exception):
    """Redis refused a write inside a batch's transaction (a key of another type, a script's error) and, as EXEC
    does, applied the rest, the checkpoint with them: the read model lacks that write for good, and redoing the
    batch would count its counters twice. Only a rebuild puts it right."""

    def __init__(self, refused: redis.ResponseError) -> None:
        super().__init__(f"a write in the batch's transaction was refused: {refused}")
        self.refused = refused


@dataclass(frozen=True)
class Lease:
    """A worker's hold on a partition (``ProjectionRunner.catch_up``): it keeps workers from doing the same work at
    once, and correctness never depends on it."""

    key: str
    token: str
    ttl_ms: int


class CheckpointWatch:
    """A connection of its own, out of the client's pool, WATCHing one partition's checkpoint."""

    def __init__(self, connection: redis.Redis, checkpoint_key: str, lease: Lease) -> None:
        self._pool = connection.connection_pool
        self._connection: Any = self._pool.get_connection()  # redis-py leaves its connections' methods untyped
        self._checkpoint_key = checkpoint_key
        self._renewal: Command = ("EVAL", _RENEW, 1, lease.key, lease.token, lease.ttl_ms)
        self._replies = 0  # replies to the commit sent, not yet read (none: nothing sent, or not sent whole)

    def __enter__(self) -> CheckpointWatch:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        """Hand the connection back to the pool WATCHing nothing: UNWATCHed, or (after an error, with replies maybe
        left unread on it) dropped."""
        try:
            if kind is None and self._replies == 0:
                self._exchange([("UNWATCH",)])
            else:
                self._connection.disconnect()
        finally:
            self._pool.release(self._connection)

    def checkpoint(self) -> int:
        """WATCH the checkpoint afresh (a WATCH that saw a change fails every EXEC until UNWATCH) and read it, with
        the client's retries: on a dropped connection the three are sent again on a new one."""
        key, connection = self._checkpoint_key, self._connection

        def watch_and_read() -> int:
            return int(self._exchange([("UNWATCH",), ("WATCH", key), ("GET", key)])[-1] or 0)

        checkpoint: int = connection.retry.call_with_retry(watch_and_read, lambda _: connection.disconnect())
        return checkpoint

    def send_commit(self, writes: Sequence[Command], position: int) -> None:
        """Send a batch's writes with the checkpoint they bring the partition to, in one transaction, and behind it
        the lease's renewal and the next WATCH and read of the checkpoint; their replies are ``committed``'s."""
        key = self._checkpoint_key
        commands = [("MULTI",), *writes, ("SET", key, position), ("EXEC",), self._renewal, ("WATCH", key), ("GET", key)]
        try:
            self._connection.send_packed_command(packed(commands))
        except (redis.ConnectionError, redis.TimeoutError):
            self._connection.disconnect()  # committed() finds out from the checkpoint
            return
        self._replies = len(commands)

    def committed(self) -> tuple[bool, int]:
        """Whether the batch sent was committed, and the checkpoint as it stands now, WATCHed again. A batch whose
        connection dropped before its answer counts as not committed: its documents are read again, whoever
        committed them. A write Redis refused in the transaction is raised as ``PartlyCommitted``."""
        replies, self._replies = self._replies, 0
        if replies > 0:
            try:
                *_, done, _renewed, _watched, checkpoint = [self._read() for _ in range(replies)]
            except (redis.ConnectionError, redis.TimeoutError):
                self._connection.disconnect()
            else:
                if done is not None:
                    try:
                        raise_first_error(done)
                    except redis.ResponseError as refused:
                        raise PartlyCommitted(refused) from refused
                return done is not None, int(checkpoint or 0)
        return False, self.checkpoint()

    def _exchange(self, commands: Sequence[Command]) -> list[Any]:
        self._connection.send_packed_command(packed(commands))
        return [self._read() for _ in commands]

    def _read(self) -> Any:
        return self._connection.read_response()
