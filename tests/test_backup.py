"""Export the log, flush Redis, import, rebuild: every report answers exactly as before (both backends)."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from services.intake.app import create_app as create_intake
from shared import backup
from shared.backup import export_log, import_log, verify_log
from shared.bootstrap import event_store
from shared.config import Settings
from shared.eventstore import STORED_FIELDS, EventStore, partition_of
from shared.redis_values import stream_entries
from tests import scenario
from tests.conftest import COPENHAGEN, STAFF, referral_body
from tests.support import auth, grant_test_keys, run_workers

REPORTS = [
    "statistics/status?on=2015-11-30",
    "statistics/status?on=2016-01-31",
    "statistics/status?on=2016-07-01",
    "statistics/status?on=2016-07-01&partner=reden",
    "statistics/intake",
    "referrals-per-partner",
    "statistics/caseloads?on=2016-07-01&from=2016-01",
    "statistics/courses",
    "statistics/measures",
    "statistics/success-criteria",
    "statistics/fidelity?on=2016-10-01",
    "status-report?on=2016-07-01&format=json",
    "export/courses.csv",
    "export/measurements.csv",
]


def answers(reporting: FlaskClient) -> dict[str, Any]:
    result = {}
    for path in REPORTS:
        response = reporting.get(f"/programmes/demo-cph/{path}", headers=auth("evaluator"))
        assert response.status_code == 200, path
        result[path] = response.get_json() if response.is_json else response.get_data(as_text=True)
    return result


def cli(connection: redis.Redis, *args: str) -> str:
    result = create_intake(connection, Settings.from_env({})).test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return str(result.output)


def test_export_flush_import_rebuild_answers_exactly_as_before(
    intake: FlaskClient, reporting: FlaskClient, cph: str, connection: redis.Redis, store: EventStore, tmp_path: Path
) -> None:
    cases = scenario.build(intake)
    run_workers(connection)
    before = answers(reporting)
    case_before = intake.get(f"/cases/{cases['A']}", headers=STAFF).get_json()
    assert before["statistics/status?on=2016-07-01"]["distinct_citizens"] == 6

    backup, keys = tmp_path / "log.jsonl.gz", tmp_path / "keys.jsonl.gz"
    assert f"{store.head()} events" in cli(connection, "log", "export", str(backup))
    assert "citizen keys" in cli(connection, "vault", "export", str(keys))
    assert (tmp_path / "log.jsonl.gz.sha256").read_text().split()[1] == "log.jsonl.gz"
    head = store.head()
    connection.flushdb()
    assert store.head() == 0
    assert f"{head} events restored" in cli(connection, "log", "import", str(backup))
    assert "skipped" in cli(connection, "vault", "import", str(keys))
    cli(connection, "projections", "rebuild", "all")
    assert "0 problem(s)" in cli(connection, "log", "verify")

    assert answers(reporting) == before
    assert intake.get(f"/cases/{cases['A']}", headers=STAFF).get_json() == case_before  # sealed text readable


def test_an_export_taken_while_referrals_arrive_holds_the_log_up_to_its_head_and_imports(
    intake: FlaskClient, cph: str, store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is written as the log is read, not after reading it all into memory, so referrals appended
    meanwhile must stay out of it: it holds the log up to the head its header names, as an import checks."""
    monkeypatch.setattr(backup, "BATCH", 3)  # the file is written while the log is still being read
    for _ in range(40):
        assert intake.post("/referrals", json=referral_body(), headers=STAFF).status_code == 201
    head = store.head()

    def meanwhile(_: int) -> None:  # a referral arrives with every event written to the file
        assert intake.post("/referrals", json=referral_body(), headers=STAFF).status_code == 201

    exported = tmp_path / "log.jsonl.gz"
    assert export_log(store, exported, progress=meanwhile)[0] == head
    assert store.head() == 2 * head  # each referral here is one event
    store.redis.flushdb()
    assert import_log(store, exported) == head
    assert verify_log(store).problems == []


def _stored_field_names(store: EventStore) -> set[tuple[str, ...]]:
    """The orders of field names the log's entries hold their fields in."""
    entries = [e for p in range(store.partitions) for e in stream_entries(store.redis.xrange(store.keys.partition(p)))]
    return {tuple(name.decode() for name in fields) for _, fields in entries}


def test_an_import_stores_fields_in_the_appends_order_and_a_log_imported_in_another_reads_the_same(
    intake: FlaskClient, cph: str, store: EventStore, tmp_path: Path
) -> None:
    """The log's reader takes an event's fields by place when they are in the order the append writes them, and
    by name when not: an import before 2026-12-07 wrote them in the file's order, that of their names."""
    for _ in range(5):
        assert intake.post("/referrals", json=referral_body(), headers=STAFF).status_code == 201
    before = store.read_all()
    assert _stored_field_names(store) == {STORED_FIELDS}
    exported = tmp_path / "log.jsonl.gz"
    export_log(store, exported)
    store.redis.flushdb()
    assert import_log(store, exported) == len(before)
    assert _stored_field_names(store) == {STORED_FIELDS}
    assert store.read_all() == before

    for p in range(store.partitions):  # as an earlier import left them
        key = store.keys.partition(p)
        entries = stream_entries(store.redis.xrange(key))
        store.redis.delete(key)
        for entry_id, fields in entries:
            store.redis.xadd(key, dict(sorted(fields.items())), id=entry_id)
    assert _stored_field_names(store) == {tuple(sorted(STORED_FIELDS))}
    assert store.read_all() == before
    assert [e for p in range(store.partitions) for e in store.read_partition(p, 0, 100)] == sorted(
        before, key=lambda e: (partition_of(e.stream_id, store.partitions), e.global_position)
    )
    assert store.read_stream(before[-1].stream_id) == [before[-1]]
    assert verify_log(store).problems == []


def _referrals_exported(intake: FlaskClient, store: EventStore, path: Path, referrals: int) -> int:
    """Post ``referrals`` referrals and export the log to ``path``; returns its head."""
    for _ in range(referrals):
        assert intake.post("/referrals", json=referral_body(), headers=STAFF).status_code == 201
    return export_log(store, path)[0]


def test_nothing_is_appended_while_an_import_restores_the_log_nor_after_it_was_interrupted(
    intake: FlaskClient,
    cph: str,
    connection: redis.Redis,
    store: EventStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A referral appended during an import would take a position the file holds: the import claims the empty
    store, every append is refused (503, and retried later) until the last event is restored."""
    exported = tmp_path / "log.jsonl.gz"
    head = _referrals_exported(intake, store, exported, 5)
    connection.flushdb()
    monkeypatch.setattr(backup, "BATCH", 3)
    restored: list[int] = []
    refusals: list[tuple[int, str, str | None]] = []

    def meanwhile(events: int) -> None:  # a referral arrives after every batch written
        restored.append(events)
        response = intake.post("/referrals", json=referral_body(), headers=STAFF)
        assert store.head() == sum(restored), "only the import writes to the log"
        refusals.append(
            (response.status_code, response.get_json()["error"]["code"], response.headers.get("Retry-After"))
        )

    assert import_log(store, exported, progress=meanwhile) == head
    # the last referral came with every event restored, the key known: refused only because of the import
    assert refusals[-1] == (503, "log_restoring", "60")
    assert verify_log(store).problems == []
    after = intake.post("/referrals", json=referral_body(), headers=STAFF)
    assert after.status_code == 201 and after.get_json()["positions"] == [head + 1]

    connection.flushdb()

    def crash_before_release(_: int) -> None:
        if store.head() == head:
            raise KeyboardInterrupt  # the import's process is stopped after its last write

    with pytest.raises(KeyboardInterrupt):
        import_log(store, exported, progress=crash_before_release)
    refused = intake.post("/referrals", json=referral_body(), headers=STAFF)
    assert refused.status_code == 503 and refused.get_json()["error"]["code"] == "log_restoring"
    assert store.head() == head
    assert connection.hexists(store.keys.meta, "restoring")


def test_an_interrupted_import_is_finished_by_importing_the_same_file_again(
    intake: FlaskClient,
    cph: str,
    connection: redis.Redis,
    store: EventStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each batch is one script, so a store an import left holds the file's first events: the same file
    imported again goes on after them; another file is refused, naming the one to finish."""
    exported, other = tmp_path / "log.jsonl.gz", tmp_path / "other.jsonl.gz"
    head = _referrals_exported(intake, store, exported, 7)
    entries = [store.redis.xrange(store.keys.partition(p)) for p in range(store.partitions)]
    _referrals_exported(intake, store, other, 1)
    connection.flushdb()
    monkeypatch.setattr(backup, "BATCH", 3)

    def crash_after_two_batches(_: int) -> None:
        if store.head() == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_log(store, exported, progress=crash_after_two_batches)
    assert store.head() == 6 and head > 6
    runner = create_intake(connection, Settings.from_env({})).test_cli_runner()
    refused = runner.invoke(args=["log", "import", str(other)])
    assert refused.exit_code == 1 and "another file (log.jsonl.gz)" in refused.output and "6 events" in refused.output
    finished = runner.invoke(args=["log", "import", str(exported)])
    assert finished.exit_code == 0, finished.output
    assert f"{head} events restored" in finished.output
    assert store.head() == head and not connection.hexists(store.keys.meta, "restoring")
    assert verify_log(store).problems == []
    assert [
        store.redis.xrange(store.keys.partition(p)) for p in range(store.partitions)
    ] == entries  # the log as exported, nothing written twice
    assert intake.post("/referrals", json=referral_body(), headers=STAFF).get_json()["positions"] == [head + 1]

    connection.flushdb()
    with pytest.raises(KeyboardInterrupt):
        import_log(store, exported, progress=crash_after_two_batches)
    with gzip.open(exported) as lines:
        sixth = json.loads(lines.readlines()[6])
    connection.hset(store.keys.event_ids, sixth["id"], "1:1")
    with pytest.raises(backup.BackupError, match="at position 6 is not the file's"):
        import_log(store, exported)
    assert store.head() == 6


def test_an_import_stops_rather_than_write_among_another_imports_events(
    intake: FlaskClient,
    cph: str,
    connection: redis.Redis,
    store: EventStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An import that still runs (or hung and woke) while the operator imports again: a batch is written only
    while the claim is its import's and the log ends where the batch begins, so it stops instead of writing
    its events after another's, or the same positions twice."""
    exported, other = tmp_path / "log.jsonl.gz", tmp_path / "other.jsonl.gz"
    head = _referrals_exported(intake, store, exported, 7)
    connection.flushdb()  # another log, of other events
    other_store = event_store(connection, Settings.from_env({}))
    grant_test_keys(other_store)
    other_intake = create_intake(connection, Settings.from_env({})).test_client()
    assert other_intake.post("/programmes", json=COPENHAGEN, headers=STAFF).status_code == 201
    other_head = _referrals_exported(other_intake, other_store, other, 3)
    monkeypatch.setattr(backup, "BATCH", 3)

    def interrupted_after_one_batch(_: int) -> None:
        raise KeyboardInterrupt

    def meanwhile(path: Path) -> Callable[[int], None]:
        """After the first import's first batch: the same file's import, interrupted there too (same claim, the
        log moved on); or the store emptied and another file's import, interrupted (the claim not ours)."""

        def run_once(_: int) -> None:
            if store.head() == 3 and not started:
                started.append(path)
                if path == other:
                    connection.flushdb()
                with pytest.raises(KeyboardInterrupt):
                    import_log(
                        store, path, progress=lambda _: None if store.head() < 6 else interrupted_after_one_batch(0)
                    )

        return run_once

    for path, stopped in ((exported, "another import is writing this log"), (other, "another import holds this store")):
        started: list[Path] = []
        connection.flushdb()
        with pytest.raises(backup.BackupError, match=stopped):
            import_log(store, exported, progress=meanwhile(path))
        assert started == [path]
        assert import_log(store, path) == (head if path == exported else other_head)  # the other one finishes
        assert verify_log(store).problems == []
        with gzip.open(path) as lines:
            events = [json.loads(line)["id"] for line in lines.readlines()[1:]]
        assert [e.event_id for e in store.read_all()] == events  # that file's log, nothing else


def test_an_import_interrupted_before_claims_held_a_checksum_is_finished_too(
    intake: FlaskClient,
    cph: str,
    connection: redis.Redis,
    store: EventStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The previous version claimed the store with the file's name: importing that file again finishes it."""
    exported = tmp_path / "log.jsonl.gz"
    head = _referrals_exported(intake, store, exported, 7)
    connection.flushdb()
    monkeypatch.setattr(backup, "BATCH", 3)
    with pytest.raises(KeyboardInterrupt):
        import_log(store, exported, progress=lambda _: (_ for _ in ()).throw(KeyboardInterrupt))
    connection.hset(store.keys.meta, "restoring", exported.name)  # as the previous version left it
    assert import_log(store, exported) == head and not connection.hexists(store.keys.meta, "restoring")
    assert verify_log(store).problems == []


def test_verify_checks_the_log_up_to_its_head_while_referrals_arrive(
    intake: FlaskClient, cph: str, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backup, "BATCH", 2)
    for _ in range(6):
        assert intake.post("/referrals", json=referral_body(), headers=STAFF).status_code == 201
    head = store.head()

    def meanwhile(_: int) -> None:
        assert intake.post("/referrals", json=referral_body(), headers=STAFF).status_code == 201

    result = verify_log(store, progress=meanwhile)
    assert (result.events, result.problems) == (head, [])
    assert store.head() > head


def test_import_refuses_a_log_of_another_partition_count_than_the_services_use(
    intake: FlaskClient, cph: str, connection: redis.Redis, store: EventStore, tmp_path: Path
) -> None:
    exported = tmp_path / "log.jsonl.gz"
    head = export_log(store, exported)[0]
    connection.flushdb()
    eight = event_store(connection, Settings.from_env({"CASEFLOW_PARTITIONS": "8"}))  # services started so
    with pytest.raises(backup.BackupError, match=f"CASEFLOW_PARTITIONS={store.partitions}"):
        import_log(eight, exported)
    assert eight.head() == 0
    assert not connection.hexists(store.keys.meta, "restoring")  # refused before claiming: writes still go
    connection.flushdb()
    assert import_log(event_store(connection, Settings.from_env({})), exported) == head


def test_restoring_old_keys_does_not_undo_an_erasure(
    intake: FlaskClient, cph: str, connection: redis.Redis, tmp_path: Path
) -> None:
    case = intake.post("/referrals", json=referral_body(citizen={"alias": "Maja Hansen"}), headers=STAFF).get_json()
    citizen = intake.get(f"/cases/{case['case_id']}", headers=STAFF).get_json()["citizen_id"]
    keys = tmp_path / "keys.jsonl.gz"
    cli(connection, "vault", "export", str(keys))  # a backup taken before the erasure
    run_workers(connection)
    erased = intake.post(
        f"/programmes/demo-cph/citizens/{citizen}/erasure", json={"requested_by": "citizen"}, headers=STAFF
    )
    assert erased.status_code == 201
    assert "1 skipped" in cli(connection, "vault", "import", str(keys))
    assert intake.get(f"/cases/{case['case_id']}", headers=STAFF).get_json()["citizen_alias"] == "[erased]"


def test_the_checksum_file_checks_with_sha256sum_and_an_older_exports_still_imports(
    intake: FlaskClient, cph: str, connection: redis.Redis, store: EventStore, tmp_path: Path
) -> None:
    """The .sha256 is the compressed file's digest, as `sha256sum -c` checks it; exports made before that hold
    the digest of the uncompressed lines, and still import."""
    backup = tmp_path / "log.jsonl.gz"
    cli(connection, "log", "export", str(backup))
    checked = subprocess.run(["sha256sum", "-c", "log.jsonl.gz.sha256"], cwd=tmp_path, capture_output=True, text=True)
    assert checked.returncode == 0 and "log.jsonl.gz: OK" in checked.stdout
    with gzip.open(backup, "rb") as source:
        older = hashlib.sha256(source.read()).hexdigest()
    (tmp_path / "log.jsonl.gz.sha256").write_text(f"{older}  log.jsonl.gz\n")
    head = store.head()
    connection.flushdb()
    assert f"{head} events restored" in cli(connection, "log", "import", str(backup))


def test_import_refuses_a_damaged_file_and_a_store_in_use(
    intake: FlaskClient, cph: str, connection: redis.Redis, tmp_path: Path
) -> None:
    backup = tmp_path / "log.jsonl.gz"
    cli(connection, "log", "export", str(backup))
    runner = create_intake(connection, Settings.from_env({})).test_cli_runner()
    refused = runner.invoke(args=["log", "import", str(backup)])
    assert refused.exit_code == 1 and "empty store" in refused.output
    connection.flushdb()
    with gzip.open(backup, "ab") as damaged:
        damaged.write(b'{"position": 999}\n')
    refused = runner.invoke(args=["log", "import", str(backup)])
    assert refused.exit_code == 1 and "checksum" in refused.output


def _first_entry(store: EventStore, stream: str) -> tuple[str, dict[Any, Any]]:
    partition = store.keys.partition(partition_of(stream, store.partitions))
    return partition, stream_entries(store.redis.xrange(partition, count=1))[0][1]


@pytest.mark.parametrize(
    ("damage", "found"),
    [
        ("index shortened", "programme-demo-cph: its index lists 1 events, the log 2"),
        ("index points elsewhere", "programme-demo-cph: its index lists 2 events, the log 2; they differ from event 1"),
        ("schema", "CorruptEvent"),
        ("event-id index", "the event-id index says 999:1"),
        ("wrong partition", "is in partition"),
        ("position twice", "is held by two events"),
        ("index of no events", "case-ghost: its index lists positions, the log no event of it"),
    ],
)
def test_verify_finds_a_damaged_log(
    intake: FlaskClient, cph: str, connection: redis.Redis, store: EventStore, damage: str, found: str
) -> None:
    stream = "programme-demo-cph"
    assert (
        intake.post("/programmes/demo-cph/changes", json={"funding_end": "2017-06-30"}, headers=STAFF).status_code
        == 201
    )
    assert verify_log(store).problems == []  # undamaged
    partition, fields = _first_entry(store, stream)
    first = store.read_stream(stream)[0]
    if damage == "index shortened":
        connection.rpop(store.keys.stream(stream))
    elif damage == "index points elsewhere":  # as long as before: a check of lengths alone passes it
        connection.lset(store.keys.stream(stream), 0, str(1 if first.global_position != 1 else 2))
    elif damage == "schema":
        connection.xadd(partition, {**fields, b"payload": b"{}"}, id=f"{store.head() + 1}-0")
        connection.incr(store.keys.position)
    elif damage == "event-id index":
        connection.hset(store.keys.event_ids, first.event_id, "999:1")
    elif damage == "index of no events":  # reading case-ghost would give the programme's first event
        connection.rpush(store.keys.stream("case-ghost"), first.global_position)
    elif damage == "wrong partition":
        other = store.keys.partition((partition_of(stream, store.partitions) + 1) % store.partitions)
        connection.xadd(other, fields, id=f"{store.head() + 1}-0")
        connection.incr(store.keys.position)
    else:
        another = next(p for p in range(store.partitions) if store.keys.partition(p) != partition)
        connection.xadd(store.keys.partition(another), fields, id=f"{first.global_position}-0")
    result = create_intake(connection, Settings.from_env({})).test_cli_runner().invoke(args=["log", "verify"])
    assert result.exit_code == 1 and "PROBLEM" in result.output and found in result.output, result.output


def test_log_show_from_a_position(intake: FlaskClient, cph: str, connection: redis.Redis, store: EventStore) -> None:
    head = store.head()
    intake.post("/referrals", json=referral_body(citizen={"alias": "Maja Hansen"}), headers=STAFF)
    shown = cli(connection, "log", "show", "--from", str(head))
    assert shown.count("\n") == 1 and "ReferralReceived v2" in shown and "Maja" not in shown
