"""A partition run's transactions (``shared.checkpoint_watch``): a commit under the WATCH, pipelined, and the
connection handed back to the pool as it was taken."""

from __future__ import annotations

import contextlib

import pytest
import redis

from shared.checkpoint_watch import CheckpointWatch, Lease, PartlyCommitted

CHECKPOINT, LEASE = "t:checkpoint", Lease("t:lease", "token", 10_000)


def a_transaction_commits(connection: redis.Redis) -> bool:
    """Whether a MULTI/EXEC on a connection of the pool goes through (one still WATCHing a changed key aborts)."""
    with connection.pipeline() as pipe:
        pipe.set("t:other", 1)
        try:
            pipe.execute()
        except redis.WatchError:
            return False
    return True


def test_a_commit_sets_its_checkpoint_renews_the_lease_and_watches_again(connection: redis.Redis) -> None:
    connection.set(LEASE.key, LEASE.token, px=1_000)
    with CheckpointWatch(connection, CHECKPOINT, LEASE) as watch:
        assert watch.checkpoint() == 0
        watch.send_commit([("SET", "t:doc", "folded")], 7)
        assert watch.committed() == (True, 7)
        connection.set(CHECKPOINT, 9)  # another worker committed after this one: the next commit must fail
        watch.send_commit([("SET", "t:doc", "stale")], 8)
        assert watch.committed() == (False, 9)
    assert connection.get("t:doc") == b"folded"
    assert connection.pttl(LEASE.key) > 1_000


def test_a_commit_after_a_change_to_the_checkpoint_since_it_was_read_is_refused(connection: redis.Redis) -> None:
    with CheckpointWatch(connection, CHECKPOINT, LEASE) as watch:
        assert watch.checkpoint() == 0
        connection.set(CHECKPOINT, 4)
        watch.send_commit([("SET", "t:doc", "stale")], 3)
        assert watch.committed() == (False, 4)
    assert connection.get("t:doc") is None and connection.get(CHECKPOINT) == b"4"


def test_reading_the_checkpoint_again_forgets_a_change_seen_before(connection: redis.Redis) -> None:
    """A WATCH that saw a change fails every EXEC until UNWATCH: a worker that found itself overtaken and read the
    checkpoint again must be able to commit from there."""
    with CheckpointWatch(connection, CHECKPOINT, LEASE) as watch:
        watch.checkpoint()
        connection.set(CHECKPOINT, 4)
        assert watch.checkpoint() == 4
        watch.send_commit([("SET", "t:doc", "folded")], 6)
        assert watch.committed() == (True, 6)


@pytest.mark.parametrize("ending", ["caught up", "failed"])
def test_the_connection_goes_back_to_the_pool_watching_nothing(connection: redis.Redis, ending: str) -> None:
    failing = pytest.raises(RuntimeError) if ending == "failed" else contextlib.nullcontext()
    with failing, CheckpointWatch(connection, CHECKPOINT, LEASE) as watch:
        watch.checkpoint()
        if ending == "failed":
            raise RuntimeError("a batch failed to fold")
    connection.set(CHECKPOINT, 5)  # the pool hands out the connection it was given back last
    assert a_transaction_commits(connection)


def test_a_write_the_server_refuses_in_a_commit_is_raised_and_leaves_no_reply_unread(connection: redis.Redis) -> None:
    """EXEC applies what it can: the rest of the batch and its checkpoint are written, which is why it is raised
    as a commit made in part (the runner marks the read model damaged: ``test_projections``)."""
    connection.rpush("t:list", "x")
    with pytest.raises(PartlyCommitted, match="WRONGTYPE"), CheckpointWatch(connection, CHECKPOINT, LEASE) as watch:
        watch.checkpoint()
        watch.send_commit([("INCR", "t:list"), ("SET", "t:doc", "folded")], 2)
        watch.committed()
    assert connection.get("t:doc") == b"folded" and connection.get(CHECKPOINT) == b"2"
    assert connection.ping()
    assert a_transaction_commits(connection)
