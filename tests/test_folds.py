"""Folds held per process: always the log's current state, however they were brought up to date (both backends)."""

from __future__ import annotations

from datetime import date

import redis
from flask.testing import FlaskClient

from services.intake.app import create_app as create_intake
from services.intake.service import Context, Referral
from shared.aggregates import Folds, caseload_fold, fold_whole, programme_fold
from shared.config import Settings
from shared.domain import events as ev
from shared.domain.caseload import caseload_stream
from shared.eventstore import EventStore
from shared.keys import ProjectionKeys
from shared.nudges import SUBSCRIBERS
from shared.vault import ERASED, Vault
from tests.conftest import STAFF, referral_body
from tests.support import _new, counting_round_trips, grant_test_keys


def defined(name: str) -> ev.ProgrammeDefined:
    return ev.ProgrammeDefined(
        name=name,
        methods=("cti",),
        course_months=12,
        phases=(("phase_1", 4), ("phase_2", 4), ("phase_3", 4)),
        purposes=(),
        targets={},
        recruitment_start=date(2016, 1, 1),
        recruitment_end=date(2016, 3, 31),
        funding_end=date(2016, 12, 31),
        caseload_limit=10,
        assessment_interval_months=2,
        scale_areas=("housing",),
        scale_min=1,
        scale_max=10,
    )


def test_a_held_fold_reads_on_from_its_version_and_notices_a_store_restored_under_it(
    store: EventStore, connection: redis.Redis
) -> None:
    folds = Folds(store)
    fold = programme_fold("p")
    store.append("programme-p", [_new("programme-p", defined("first"))])
    assert folds.current(fold)[0].name == "first"
    store.append("programme-p", [_new("programme-p", ev.WorkerJoined("anna", "cti"))])
    [programme] = folds.current(fold)  # read on: only the event after the held version
    assert programme == fold_whole(store, fold) and programme.version == 2
    # The store is flushed and another log is restored: the stream is shorter than what is held.
    connection.flushdb()
    store = EventStore(connection, store.registry, partitions=store.partitions)
    store.append("programme-p", [_new("programme-p", defined("restored"))])
    [programme] = folds.current(fold)
    assert programme.name == "restored" and programme.version == 1


def test_a_thread_that_read_a_stream_earlier_does_not_put_back_an_older_fold(store: EventStore) -> None:
    """Requests share the folds: one that read the programme before a funding extension may finish after one
    that read it since. What is held stays the later, or a command decided on the held programme would be refused
    on the old funding end, and a refusal has no append to catch it."""
    folds = Folds(store)
    fold = programme_fold("p")
    store.append("programme-p", [_new("programme-p", defined("first"))])
    [before] = folds.current(fold)
    store.append("programme-p", [_new("programme-p", ev.ProgrammeChanged(funding_end=date(2017, 6, 30)))])
    [extended] = folds.current(fold)
    folds._hold("programme-p", 1, before)  # the slower request's read, folded and held last
    assert folds.held(fold) == (2, extended) and extended.funding_end == date(2017, 6, 30)


def test_a_referral_on_a_programme_held_stale_is_refused_by_its_read_check_and_retried(
    connection: redis.Redis, settings: Settings, intake: FlaskClient, cph: str
) -> None:
    """Two intake processes: one holds the programme, the other changes it; the first's next referral meets
    its read-check, reads the programme afresh and succeeds."""
    other = create_intake(connection, settings).test_client()
    assert intake.post("/referrals", json=referral_body(), headers=STAFF).status_code == 201
    worker = {"worker_id": "anna", "method": "cti", "on": "2016-01-02"}
    assert other.post(f"/programmes/{cph}/workers", json=worker, headers=STAFF).status_code == 201
    answer = intake.post("/referrals", json=referral_body(), headers=STAFF)
    assert answer.status_code == 201, answer.get_json()
    service = intake.application.extensions["intake"]
    assert service.folds.held(programme_fold(cph))[1].workers.keys() == {"anna"}
    # The answer is the case as reading it back gives it.
    assert (
        intake.get(f"/cases/{answer.get_json()['case_id']}", headers=STAFF).get_json()
        | {"positions": answer.get_json()["positions"]}
        == answer.get_json()
    )


def test_a_citizen_key_remembered_within_a_request_is_forgotten_on_erasure(connection: redis.Redis) -> None:
    vault = Vault(connection, "cf", b"master")
    sealed = vault.seal("citizen-1", "Maja")
    with vault.remembering():
        assert vault.reveal(sealed) == "Maja"
        Vault(connection, "cf", b"master").erase("citizen-1")  # another process erases: this request still
        assert vault.reveal(sealed) == "Maja"  # reads the key it fetched moments ago...
        vault.erase("citizen-1")
        assert vault.reveal(sealed) == ERASED  # ...but never after erasing it itself
    assert vault.reveal(sealed) == ERASED  # and the next request asks Redis again


def test_sealing_for_a_new_citizen_creates_one_key_and_racing_sealers_share_it(connection: redis.Redis) -> None:
    first, second = Vault(connection, "cf", b"master"), Vault(connection, "cf", b"master")
    a, b = first.seal("citizen-2", "Maja"), second.seal("citizen-2", "Bo")
    assert first.reveal(b) == "Bo" and second.reveal(a) == "Maja"
    assert len(list(connection.scan_iter(match="cf:vault:citizen:*"))) == 1


def test_a_referral_to_a_programme_gone_in_a_restore_is_refused_not_written(
    connection: redis.Redis, store: EventStore, intake: FlaskClient, cph: str
) -> None:
    """This process holds the programme; the store is restored to a log without it. The referral's read-check
    meets a stream that is not at the held version, and the retry finds no programme: 422, nothing appended."""
    assert intake.post("/referrals", json=referral_body(), headers=STAFF).status_code == 201
    connection.flushdb()
    grant_test_keys(EventStore(connection, store.registry, partitions=store.partitions))
    head = store.head()
    answer = intake.post("/referrals", json=referral_body(), headers=STAFF)
    assert answer.status_code == 422 and answer.get_json()["error"]["fields"] == {"programme_id": ["no such programme"]}
    assert store.head() == head


def test_a_referral_with_its_programme_caseload_and_partner_held_is_one_round_trip(
    intake: FlaskClient, store: EventStore, cph: str
) -> None:
    """Its key, checked by the append against the partner as held; the new citizen's key, stored in the same
    round trip; the answer, the course as the append left it. Each of the three alone would add one."""
    assert intake.post("/referrals", json=referral_body(), headers=STAFF).status_code == 201  # now all held
    for subscriber in SUBSCRIBERS:  # a catch-up job waits for every partition, as nearly always under load
        for partition in range(store.partitions):
            store.redis.set(ProjectionKeys("cf", subscriber.projection).nudge_pending(partition), 1, ex=60)
    with counting_round_trips() as sent:
        answer = intake.post("/referrals", json=referral_body(), headers=STAFF)
    assert answer.status_code == 201
    assert sent == ["pipeline:SET,EVALSHA"]
    answered = answer.get_json()
    assert answered["citizen_alias"] == "Maja"
    read_back = intake.get(f"/cases/{answered['case_id']}", headers=STAFF).get_json()
    assert read_back | {"positions": answered["positions"]} == answered


def test_an_answer_from_the_append_reads_what_changed_since_this_process_held_it(
    connection: redis.Redis, settings: Settings, intake: FlaskClient, cph: str
) -> None:
    """Another process changes the caseload this one holds; a referral here reads nothing before its append,
    which reports the caseload's version: not the one held, so the answer reads the caseload, not trusts it."""
    first = intake.post("/referrals", json=referral_body(), headers=STAFF).get_json()["case_id"]
    service = intake.application.extensions["intake"]
    assert service.folds.held(caseload_fold(cph))[0] == 0
    other = create_intake(connection, settings).test_client()
    for path, body in (
        (f"/programmes/{cph}/workers", {"worker_id": "anna", "method": "cti", "on": "2016-01-02"}),
        (f"/referrals/{first}/assessment", {"on": "2016-01-20"}),
        (f"/cases/{first}/assignment", {"worker_id": "anna", "on": "2016-01-21"}),
    ):
        assert other.post(path, json=body, headers=STAFF).status_code == 201
    referral = Referral(cph, "reden", True, "Bo", None, None)
    result = service.refer(Context("reden:test", "request-1"), date(2016, 2, 1), referral)
    assert result.versions_at_append[caseload_stream(cph)] == 1
    with counting_round_trips() as sent:
        _, _, caseload = service.course(result.stream_id, at=result)
    assert len(sent) == 1 and caseload.version == 1 and caseload.assignments == {first: "anna"}
    with counting_round_trips() as sent:  # now held at the version the append reported: nothing to read
        assert service.course(result.stream_id, at=result)[2] == caseload
    assert sent == []


def test_a_command_on_a_case_reads_it_with_its_programme_and_caseload_in_one_round_trip(
    connection: redis.Redis, settings: Settings, intake: FlaskClient, cph: str
) -> None:
    """The scope check reads the case, its programme and its caseload together, and the command decides on that
    programme (its funding end): reading the programme again cost every command one round trip more. A funding
    extension made by another process is still seen by the next command here."""
    case = intake.post("/referrals", json=referral_body(), headers=STAFF).get_json()["case_id"]
    for path, body in (
        (f"/referrals/{case}/assessment", {"on": "2016-01-20"}),
        (f"/cases/{case}/enrolment", {"on": "2016-02-01", "scores": {"housing": 3}}),
        (f"/cases/{case}/contacts", {"on": "2016-02-02", "kind": "phone"}),
    ):
        assert intake.post(path, json=body, headers=STAFF).status_code == 201
    with counting_round_trips() as sent:
        contact = {"on": "2016-02-03", "kind": "phone"}
        assert intake.post(f"/cases/{case}/contacts", json=contact, headers=STAFF).status_code == 201
    # The key's partner; the case, programme and caseload; the access log; the append; the alias for the answer.
    assert sent == ["EVALSHA", "pipeline:EVALSHA,EVALSHA,EVALSHA", "XADD", "EVALSHA", "GET"]
    with counting_round_trips() as star_sent:  # a star that does not enrol: decided on the scope check's read too
        star = {"on": "2016-04-01", "scores": {"housing": 4}}
        assert intake.post(f"/cases/{case}/stars", json=star, headers=STAFF).status_code == 201
    assert star_sent == sent

    other = create_intake(connection, settings).test_client()
    assert (
        other.post(f"/programmes/{cph}/changes", json={"funding_end": "2017-06-30"}, headers=STAFF).status_code == 201
    )
    later = {"on": "2017-01-02", "kind": "phone"}
    assert intake.post(f"/cases/{case}/contacts", json=later, headers=STAFF).status_code == 201
