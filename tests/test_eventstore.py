"""The event log: atomic, versioned, idempotent appends and ordered reads (fakeredis and real Redis)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import threading
from datetime import UTC, datetime

import hiredis
import orjson
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.domain.events import AssessmentStarted, ReferralDeclined, ReferralReceived
from shared.events import DomainEvent, NewEvent
from shared.events.envelope import COPENHAGEN, DEFERRED
from shared.eventstore import (
    ANY_VERSION,
    AppendResult,
    EarlierLayout,
    EventStore,
    IdempotencyKey,
    IdempotencyKeyReused,
    StreamWrite,
    WrongExpectedVersion,
    partition_of,
)
from shared.redis_values import packed, round_trip
from tests.support import generate_log

REFERRAL = ReferralReceived(programme_id="demo", source="reden", consent_given=True)


def new(stream: str, payload: DomainEvent = REFERRAL, event_id: str | None = None) -> NewEvent:
    event = NewEvent(stream, payload, datetime(2016, 1, 15, tzinfo=UTC), "reden")
    return NewEvent(**{**event.__dict__, "event_id": event_id}) if event_id else event


def test_append_assigns_stream_and_global_positions(store: EventStore) -> None:
    store.append("case-a", [new("case-a")], expected_version=0)
    store.append("case-b", [new("case-b")], expected_version=0)
    result = store.append(
        "case-a",
        [new("case-a", AssessmentStarted()), new("case-a", ReferralDeclined("x"))],
        expected_version=1,
    )
    assert result.stream_version == 3
    assert result.global_positions == (3, 4)
    events = store.read_stream("case-a")
    assert [(e.stream_position, e.global_position, e.event_type) for e in events] == [
        (1, 1, "ReferralReceived"),
        (2, 3, "AssessmentStarted"),
        (3, 4, "ReferralDeclined"),
    ]
    assert events[0].payload == REFERRAL
    assert events[0].occurred_at == datetime(2016, 1, 15, tzinfo=UTC)
    assert events[0].recorded_at > events[0].occurred_at
    assert store.head() == 4


def test_a_reader_may_take_only_the_first_events_of_each_stream(store: EventStore) -> None:
    """The access log names who made each case from its first event, without reading a year of course."""
    store.append("case-a", [new("case-a"), new("case-a", AssessmentStarted()), new("case-a", ReferralDeclined("x"))])
    store.append("case-b", [new("case-b")])
    assert [e.stream_position for e in store.read_streams({"case-a": 1}, limit=1).events["case-a"]] == [2]
    assert [e.stream_position for e in store.read_streams({"case-a": 0}, limit=5).events["case-a"]] == [1, 2, 3]
    first = store.first_events(["case-a", "case-b", "case-none"])
    assert {s: (e.stream_position, e.event_type) for s, e in first.items()} == {
        "case-a": (1, "ReferralReceived"),
        "case-b": (1, "ReferralReceived"),
    }
    assert store.first_events([]) == {}
    with pytest.raises(ValueError):  # it would read the whole stream from version 0, and nothing from 1
        store.read_streams({"case-a": 0}, limit=0)


def test_a_stale_expected_version_is_a_conflict_and_writes_nothing(store: EventStore) -> None:
    store.append("case-a", [new("case-a")], expected_version=0)
    with pytest.raises(WrongExpectedVersion) as stale:
        store.append("case-a", [new("case-a", AssessmentStarted())], expected_version=0)
    assert (stale.value.expected, stale.value.actual) == (0, 1)
    with pytest.raises(WrongExpectedVersion):
        store.append("case-new", [new("case-new")], expected_version=3)
    assert store.head() == 1
    assert store.stream_version("case-a") == 1
    assert store.read_stream("case-new") == []


def test_racing_writers_on_one_version_exactly_one_wins(store: EventStore) -> None:
    store.append("case-a", [new("case-a")], expected_version=0)
    outcomes: list[str] = []

    def write() -> None:
        try:
            store.append("case-a", [new("case-a", AssessmentStarted())], expected_version=1)
            outcomes.append("ok")
        except WrongExpectedVersion:
            outcomes.append("conflict")

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["ok"]
    assert store.stream_version("case-a") == 2


def test_the_same_event_id_twice_is_one_event_with_the_original_result(store: EventStore) -> None:
    first = store.append("case-a", [new("case-a", event_id="e-1")], expected_version=0)
    again = store.append("case-a", [new("case-a", event_id="e-1")], expected_version=0)
    assert not first.duplicate and again.duplicate
    assert (again.global_positions, again.stream_version) == (first.global_positions, first.stream_version)
    assert store.head() == 1
    assert len(store.read_all()) == 1


def test_an_idempotency_key_replays_the_original_append(store: EventStore) -> None:
    key = IdempotencyKey("reden", "req-1", "fingerprint-1")
    first = store.append("case-a", [new("case-a")], expected_version=0, idempotency=key)
    # A retry makes new event ids and even a new stream id: the key still finds the original.
    again = store.append("case-b", [new("case-b")], expected_version=0, idempotency=key)
    assert again.duplicate
    assert (again.stream_id, again.global_positions) == ("case-a", first.global_positions)
    assert store.head() == 1
    with pytest.raises(IdempotencyKeyReused):
        store.append("case-c", [new("case-c")], idempotency=IdempotencyKey("reden", "req-1", "other-body"))
    # Keys are scoped per client: another partner's identical key is its own request.
    other = store.append("case-d", [new("case-d")], idempotency=IdempotencyKey("livarehab", "req-1", "fp"))
    assert not other.duplicate and store.head() == 2


def test_read_all_pages_through_the_global_order(store: EventStore) -> None:
    for i in range(25):
        store.append(f"case-{i % 4}", [new(f"case-{i % 4}", AssessmentStarted() if i >= 4 else REFERRAL)])
    seen = []
    position = 0
    while page := store.read_all(after=position, limit=7):
        seen += [e.global_position for e in page]
        position = page[-1].global_position
    assert seen == list(range(1, 26))
    assert [e.global_position for e in store.read_all(after=20)] == [21, 22, 23, 24, 25]


def test_partitions_index_every_event_of_their_streams(store: EventStore) -> None:
    streams = [f"case-{i}" for i in range(40)]
    for s in streams:
        store.append(s, [new(s)], expected_version=0)
    indexed = []
    for p in range(store.partitions):
        events = store.read_partition(p, after=0, limit=1000)
        assert all(partition_of(e.stream_id, store.partitions) == p for e in events)
        assert [e.global_position for e in events] == sorted(e.global_position for e in events)
        indexed += [e.global_position for e in events]
        assert store.partition_head(p) == (events[-1].global_position if events else 0)
    assert sorted(indexed) == list(range(1, 41))


def test_the_partition_count_is_fixed_when_the_log_is_created(store: EventStore, connection: redis.Redis) -> None:
    later = EventStore(connection, store.registry, partitions=store.partitions + 5)
    assert later.partitions == store.partitions


def test_an_append_is_all_or_nothing(store: EventStore) -> None:
    store.append("case-a", [new("case-a", event_id="e-1")])
    # The second event of this batch was appended before: the new first one must not be written either.
    with pytest.raises(ValueError, match="nothing written"):
        store.append("case-b", [new("case-b", event_id="e-2"), new("case-b", event_id="e-1")])
    with pytest.raises(ValueError):
        store.append("case-a", [new("case-a"), new("case-b")])  # one append, one stream
    assert store.head() == 1
    assert store.read_stream("case-b") == []
    assert store.append("case-b", [new("case-b", event_id="e-2")], expected_version=ANY_VERSION).stream_version == 1


def test_a_multi_stream_append_is_all_or_nothing_across_streams(store: EventStore) -> None:
    store.append("case-a", [new("case-a")], expected_version=0)
    store.append("caseload-demo", [new("caseload-demo")], expected_version=0)
    stale = [
        StreamWrite("case-a", [new("case-a", AssessmentStarted())], expected_version=1),
        StreamWrite("caseload-demo", [new("caseload-demo", AssessmentStarted())], expected_version=0),
    ]
    with pytest.raises(WrongExpectedVersion) as conflict:
        store.append_many(stale)
    assert conflict.value.stream_id == "caseload-demo"
    assert (store.stream_version("case-a"), store.head()) == (1, 2)  # the first stream was not touched

    key = IdempotencyKey("reden", "close-1", "fp")
    fresh = [
        StreamWrite("case-a", [new("case-a", AssessmentStarted())], expected_version=1),
        StreamWrite("caseload-demo", [new("caseload-demo", AssessmentStarted())] * 1, expected_version=1),
    ]
    result = store.append_many(fresh, idempotency=key)
    assert result.stream_versions == {"case-a": 2, "caseload-demo": 2}
    assert result.global_positions == (3, 4)
    replayed = store.append_many(fresh, idempotency=key)
    assert replayed.duplicate and replayed.stream_versions == result.stream_versions
    assert store.head() == 4
    with pytest.raises(ValueError):
        store.append_many([StreamWrite("case-a", [new("case-a")]), StreamWrite("case-a", [new("case-a")])])


def test_a_reader_can_fetch_only_what_it_lacks(store: EventStore) -> None:
    store.append("case-a", [new("case-a"), new("case-a", AssessmentStarted()), new("case-a", ReferralDeclined("x"))])
    assert [e.stream_position for e in store.read_stream("case-a", after_version=1)] == [2, 3]


def test_an_append_reports_the_versions_it_left_and_sends_commands_alongside(store: EventStore) -> None:
    """Streams written, read-checked and observed, each at its version the instant of the append, and the log's
    identity: what lets a process answer from folds it holds. Commands alongside go first, in the same trip."""
    store.append("programme-demo", [new("programme-demo")], expected_version=0)
    store.append("caseload-demo", [new("caseload-demo"), new("caseload-demo", AssessmentStarted())])
    result = store.append_many(
        [StreamWrite("case-a", [new("case-a")], 0), StreamWrite("programme-demo", [], 1)],
        observe=["caseload-demo", "case-never-written"],
        alongside=[("SET", "cf:alongside", 1, "NX", "GET")],
    )
    assert result.versions_at_append == {"case-a": 1, "programme-demo": 1, "caseload-demo": 2, "case-never-written": 0}
    assert result.log_id == store.log_id and result.alongside == (None,) and store.redis.get("cf:alongside") == b"1"
    with pytest.raises(WrongExpectedVersion):  # refused: what went alongside stays (so it must be harmless)
        store.append_many([StreamWrite("case-a", [new("case-a")], 0)], alongside=[("INCR", "cf:alongside")])
    assert store.redis.get("cf:alongside") == b"2" and store.stream_version("case-a") == 1


def test_a_server_that_forgot_the_scripts_gets_them_again_in_pipelined_calls(store: EventStore) -> None:
    """A Redis restart empties its script cache: the pipelined reads and an append with commands alongside load
    their script and send everything again (what went alongside is harmless repeated)."""
    store.append("case-a", [new("case-a")])
    store.redis.script_flush()
    assert [len(events) for events in store.read_streams({"case-a": 0, "case-b": 0}).events.values()] == [1, 0]
    store.redis.script_flush()
    result = store.append_many([StreamWrite("case-b", [new("case-b")], 0)], alongside=[("SET", "cf:x", 1, "NX", "GET")])
    assert result.versions_at_append == {"case-b": 1} and result.alongside == (b"1",)  # our own, sent twice


def test_a_round_trip_gives_each_reply_in_its_place_an_error_reply_among_them(connection: redis.Redis) -> None:
    """Replies as the server sent them, in order; an error reply in its place, the replies after it still read,
    so the connection serves the next command cleanly."""
    connection.set("cf:text", "not a number")
    replies = round_trip(connection, [("SET", "cf:n", 41), ("INCR", "cf:text"), ("INCR", "cf:n"), ("GET", "cf:n")])
    assert replies[0] == b"OK" and replies[2:] == [42, b"42"]
    assert isinstance(replies[1], redis.ResponseError)
    assert round_trip(connection, [("GET", "cf:n")]) == [b"42"] and connection.get("cf:n") == b"42"


def test_a_round_trip_whose_connection_drops_before_its_replies_is_sent_again_by_the_clients_retries(
    real_redis_url: str,
) -> None:
    """An append's round trip rides out a connection dropped mid-flight as redis-py's pipeline did: with the
    client's retries, sent again whole (an append's event ids make a second sending write nothing). Here the
    connection drops while the server holds the second command (a blocking pop), the first one's reply read."""

    def dropped_mid_flight(retries: int, repeatable: bool = True) -> list[object]:
        client = redis.Redis.from_url(real_redis_url, retry=Retry(NoBackoff(), retries=retries))
        [connection_id] = round_trip(client, [("CLIENT", "ID")])  # the pool's one connection, used again below
        killer = threading.Timer(
            0.3, redis.Redis.from_url(real_redis_url).client_kill_filter, kwargs={"_id": connection_id}
        )
        killer.start()
        try:
            return round_trip(client, [("INCR", "cf:sent"), ("BLPOP", "cf:never", 1)], repeatable)
        finally:
            killer.join()

    redis.Redis.from_url(real_redis_url).delete("cf:sent", "cf:never")
    assert dropped_mid_flight(retries=1) == [2, None]  # the INCR sent twice: the whole round trip again
    with pytest.raises(redis.ConnectionError):  # what the retries rode out
        dropped_mid_flight(retries=0)
    with pytest.raises(redis.ConnectionError):  # one that is not repeatable is sent once, retries or not
        dropped_mid_flight(retries=1, repeatable=False)
    assert redis.Redis.from_url(real_redis_url).get("cf:sent") == b"4"


def one_packed(command: tuple[str, str, bytes]) -> bytes:
    piece: bytes = hiredis.pack_command(command)  # type: ignore[arg-type]  # typed as a one-item tuple; takes any
    return piece


@given(st.lists(st.integers(min_value=0, max_value=150_000), max_size=12))
def test_commands_are_packed_in_order_small_ones_joined_and_a_large_one_not_copied(sizes: list[int]) -> None:
    """What ``packed`` sends is every command's hiredis packing, in order; small commands go in items of at most
    64 KB (a referral's two in one system call), a larger one in an item of its own."""
    commands = [("SET", f"k{i}", b"x" * size) for i, size in enumerate(sizes)]
    pieces = [one_packed(command) for command in commands]
    items = packed(commands)
    assert b"".join(items) == b"".join(pieces)
    assert all(len(item) <= 64 * 1024 or item in pieces for item in items)
    if sum(len(piece) for piece in pieces) <= 64 * 1024:
        assert len(items) == min(1, len(commands))


def test_a_round_trip_of_small_and_large_commands_gives_every_reply(connection: redis.Redis) -> None:
    large = b"d" * 200_000
    replies = round_trip(connection, [("SET", "cf:a", 1), ("MSET", "cf:b", large, "cf:c", 2), ("GET", "cf:b")])
    assert replies == [b"OK", b"OK", large]


def test_a_read_check_guards_a_stream_that_is_not_written(store: EventStore) -> None:
    store.append("programme-demo", [new("programme-demo")], expected_version=0)
    checked = [
        StreamWrite("caseload-demo", [new("caseload-demo")], expected_version=0),
        StreamWrite("programme-demo", [], expected_version=1),
    ]
    assert store.append_many(checked).stream_versions == {"caseload-demo": 1}
    store.append("programme-demo", [new("programme-demo", AssessmentStarted())])  # the programme changes
    stale = [
        StreamWrite("caseload-demo", [new("caseload-demo", AssessmentStarted())], expected_version=1),
        StreamWrite("programme-demo", [], expected_version=1),
    ]
    with pytest.raises(WrongExpectedVersion) as conflict:
        store.append_many(stale)
    assert conflict.value.stream_id == "programme-demo"
    assert store.stream_version("caseload-demo") == 1


def test_an_event_read_from_the_log_is_the_one_its_constructor_would_build(store: EventStore) -> None:
    """Events are read without running the frozen class's constructor (``RecordedEvent.from_log``): the same
    fields, the same values, equal to one built the ordinary way, and its date computed as the property says."""
    generate_log(store, cases=20)
    events = store.read_all(limit=1000) + [e for batch in store.scan(0, store.head(), [0, 1, 2]) for e in batch]
    assert events
    for event in events:
        assert event == dataclasses.replace(event)
        assert vars(event).keys() - {"occurred_on"} == {f.name for f in dataclasses.fields(event)}
        assert event.occurred_on == event.occurred_at.astimezone(COPENHAGEN).date()
        # The payload is built without its constructor too (``EventRegistry.load``): the same attributes, in
        # the same order, with the same values (dates, tuples) as its schema's validating load builds.
        stored = orjson.dumps(event.payload)
        validated = store.registry.load(event.event_type, event.schema_version, stored, validate=True)
        assert list(vars(event.payload).items()) == list(vars(validated).items())


def test_an_events_envelope_fields_left_stored_read_as_appended_and_nothing_else_is_made_up(store: EventStore) -> None:
    """The reader leaves the fields projections never read stored (``DEFERRED``), decoded on first read: each reads
    what was appended, whichever is read first, in a copy too; an attribute the class lacks is still an error."""
    at = datetime(2016, 1, 15, tzinfo=UTC)
    appended = NewEvent("case-a", REFERRAL, at, "reden:k1", metadata={"request_id": "r1"})
    store.append("case-a", [appended], expected_version=0)
    for first in sorted(DEFERRED):
        (event,) = store.read_stream("case-a")
        assert DEFERRED.isdisjoint(vars(event))
        getattr(event, first)
        assert (event.event_id, event.actor, event.metadata) == (appended.event_id, "reden:k1", {"request_id": "r1"})
        assert event.recorded_at.tzinfo is not None and event.recorded_at > appended.occurred_at
        assert vars(event).keys() - {"occurred_on"} == {f.name for f in dataclasses.fields(event)}
    (unread,) = store.read_stream("case-a")
    assert pickle.loads(pickle.dumps(unread)) == event == copy.copy(unread)
    with pytest.raises(AttributeError, match="no attribute 'occured_at'"):
        unread.occured_at  # type: ignore[attr-defined]  # noqa: B018


@pytest.mark.parametrize("batch_size", [1, 3, 1000])
def test_the_log_in_global_order_is_the_partitions_merged_each_event_once(store: EventStore, batch_size: int) -> None:
    generate_log(store, cases=40)
    head = store.head()
    merged = [e.global_position for batch in store.scan(0, head, batch_size=batch_size) for e in batch]
    assert merged == list(range(1, head + 1))
    assert [e.global_position for batch in store.scan(5, head - 5, batch_size=batch_size) for e in batch] == list(
        range(6, head - 4)
    )
    halves = [
        {e.global_position for b in store.scan(0, head, part, batch_size) for e in b} for part in ([0, 2], [1, 3])
    ]
    everything = {e.global_position for b in store.scan(0, head, range(4, store.partitions)) for e in b}
    assert halves[0] | halves[1] | everything == set(merged) and not halves[0] & halves[1]
    for p in (0, 1):
        assert all(partition_of(e.stream_id, store.partitions) == p for b in store.scan(0, head, [p]) for e in b)


def test_a_scan_to_the_end_reads_the_log_as_it_was_when_it_began_whatever_is_appended_meanwhile(
    store: EventStore,
) -> None:
    """A partition read to its end early is not read again: without an end fixed at the start, an event appended
    to it meanwhile was skipped while a later one in another partition was read (what ``log export`` and
    ``log verify`` read)."""

    def in_partition(p: int, n: int) -> list[str]:
        return [s for s in (f"case-scan-{i}" for i in range(10_000)) if partition_of(s, store.partitions) == p][:n]

    busy, quiet = in_partition(0, 5), in_partition(1, 2)
    for stream in busy[:3]:
        store.append(stream, [new(stream)], expected_version=0)
    store.append(quiet[0], [new(quiet[0])], expected_version=0)  # fewer than a batch: read to its end at once
    head = store.head()
    scan = store.scan_stored(0, None, batch_size=3)
    seen = [entry_id for entry_id, _ in next(scan)]
    store.append(quiet[1], [new(quiet[1])], expected_version=0)  # live traffic while the scan runs
    store.append(busy[3], [new(busy[3])], expected_version=0)
    seen += [entry_id for batch in scan for entry_id, _ in batch]
    assert [int(entry_id.split(b"-")[0]) for entry_id in seen] == list(range(1, head + 1))


def test_a_log_in_an_earlier_layout_is_refused_with_the_way_to_move_it(store: EventStore) -> None:
    store.redis.xadd(store.keys.layout_1_events, {"id": "x"}, id="1-0")
    with pytest.raises(EarlierLayout, match=r"export it with that version \(log export\) and import"):
        EventStore(store.redis, store.registry)


def test_an_append_sets_its_flags_with_its_events_and_says_which_it_set(store: EventStore) -> None:
    flags = ["cf:{log}:nudge-pending:x:1", "cf:{log}:nudge-pending:y:1"]

    def append(stream: str, event: NewEvent, expected: int = ANY_VERSION) -> AppendResult:
        return store.append_many([StreamWrite(stream, [event], expected)], flags=flags, flag_ttl_s=30)

    store.redis.set(flags[1], 1)
    assert append("case-a", new("case-a")).flags_set == (flags[0],) and 0 < store.redis.ttl(flags[0]) <= 30
    assert append("case-b", new("case-b")).flags_set == ()  # both set already
    store.redis.delete(*flags)
    event = new("case-c")
    store.append("case-c", [event])
    replayed = append("case-c", event)  # a duplicate writes nothing, flags included
    assert replayed.duplicate and replayed.flags_set == () and not store.redis.exists(*flags)
    with pytest.raises(WrongExpectedVersion):
        append("case-c", new("case-c"), expected=0)
    assert not store.redis.exists(*flags)


def test_an_event_is_dated_in_copenhagen_however_its_instant_was_stored(store: EventStore) -> None:
    """The log's reader works an instant's Danish date out once per stored value (``_instant``): an instant stored
    in UTC late on New Year's Eve is New Year's Day in Copenhagen, read once or again."""
    late = datetime(2015, 12, 31, 23, 30, tzinfo=UTC)
    for stream in ("case-utc-1", "case-utc-2"):
        store.append(stream, [NewEvent(stream, REFERRAL, late, "reden")], expected_version=0)
    for stream in ("case-utc-1", "case-utc-2"):
        [event] = store.read_stream(stream)
        assert event.occurred_at == late and event.occurred_on.isoformat() == "2016-01-01"


def test_a_read_sent_ahead_gives_the_partition_as_it_was_and_one_thrown_away_leaves_its_connection_clean(
    store: EventStore,
) -> None:
    """A worker sends its next batch's read before folding the current one. Its reply is the partition as the
    read found it (events appended after it come in a later read); one thrown away is read off its connection
    all the same, or the next command sent on that connection would take its reply for its own."""
    stream = "case-ahead"
    partition = partition_of(stream, store.partitions)
    store.append(stream, [new(stream)], expected_version=0)
    ahead = store.read_partition_ahead(partition, 0, 100)
    store.append(stream, [new(stream)], expected_version=1)
    assert [e.stream_position for e in store.decode(ahead.stored())] == [1]
    with pytest.raises(RuntimeError, match="taken once"):
        ahead.stored()
    first = store.read_partition(partition, 0, 1)[0].global_position
    for _ in range(3):  # each thrown away, on whichever of the pool's connections
        store.read_partition_ahead(partition, first, 100).discard()
    assert [e.stream_position for e in store.read_partition(partition, 0, 100)] == [1, 2]
    assert store.stream_version(stream) == 2
    assert store.redis.ping()
