"""The admin command: partners and keys as events; a key is shown once, stored as a hash, revocable."""

from __future__ import annotations

import redis
from flask import Flask
from flask.testing import FlaskClient

from services.intake.app import create_app
from shared.config import Settings
from shared.eventstore import EventStore
from tests.conftest import COPENHAGEN, PARTNER, referral_body
from tests.support import _key_parts


def run(app: Flask, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["admin", *args])
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def test_keys_are_issued_once_hashed_and_revocable(connection: redis.Redis, settings: Settings) -> None:
    app = create_app(connection, settings)
    client = app.test_client()
    run(app, "partner-add", "kk-socialforvaltning", "--name", "Københavns Kommune", "--kind", "municipality")
    key = run(app, "key-issue", "kk-socialforvaltning", "--role", "coordinator", "--programme", "demo-cph").split()[0]
    assert key.startswith("cfk.kk-socialforvaltning.")
    secret = key.rsplit(".", 1)[1]
    for stored in connection.scan_iter():
        assert secret.encode() not in repr(connection.dump(stored)).encode(), stored  # only its hash is kept

    bearer = {"Authorization": f"Bearer {key}"}
    assert client.post("/programmes", json=COPENHAGEN, headers=bearer).status_code == 201
    listing = run(app, "partners")
    assert "coordinator" in listing and "active" in listing and secret not in listing

    key_id = key.split(".")[2]
    run(app, "key-revoke", "kk-socialforvaltning", key_id)
    assert client.get("/programmes/demo-cph", headers=bearer).status_code == 401
    assert "revoked" in run(app, "partners")


def test_admin_refuses_what_makes_no_sense(connection: redis.Redis, settings: Settings) -> None:
    runner = create_app(connection, settings).test_cli_runner()
    assert runner.invoke(args=["admin", "key-issue", "nobody", "--role", "referrer"]).exit_code == 1
    runner.invoke(args=["admin", "partner-add", "reden", "--name", "Reden"])
    assert runner.invoke(args=["admin", "partner-add", "reden", "--name", "Reden"]).exit_code == 1
    assert runner.invoke(args=["admin", "key-issue", "reden", "--role", "worker"]).exit_code == 2  # needs --programme
    assert runner.invoke(args=["admin", "key-revoke", "reden", "0" * 16]).exit_code == 1
    # "self" is the source of citizens' own contacts: a partner under it would see every one of them.
    refused = runner.invoke(args=["admin", "partner-add", "self", "--name", "Self"])
    assert refused.exit_code == 1 and "citizens' own contacts" in refused.output


def test_a_referral_checks_its_key_in_its_append_so_a_key_revoked_elsewhere_writes_nothing(
    connection: redis.Redis, settings: Settings, intake: FlaskClient, store: EventStore, cph: str
) -> None:
    """This process takes the referrer's key as it last saw the partner; the admin runs in another. A change
    to the partner that leaves the key valid costs a second look; a revocation, a 401 and nothing written,
    whatever the request: a body that would get 422, an idempotent replay of an accepted referral."""
    other = create_app(connection, settings)
    replayed = {**PARTNER, "Idempotency-Key": "referral-1"}
    assert intake.post("/referrals", json=referral_body(), headers=replayed).status_code == 201
    run(other, "key-issue", "reden", "--role", "referrer")  # the partner changes; this key stays valid
    head = store.head()
    answer = intake.post("/referrals", json=referral_body(), headers=PARTNER)
    assert answer.status_code == 201 and store.head() == head + 1
    processes = [intake, create_app(connection, settings).test_client(), create_app(connection, settings).test_client()]
    for process in processes[1:]:  # each holds the partner with the key valid
        assert process.post("/referrals", json=referral_body(), headers=PARTNER).status_code == 201
    run(other, "key-revoke", "reden", _key_parts("reden")[1])
    head = store.head()
    for process, body, headers in zip(
        processes, (referral_body(), {"citizen": {}}, referral_body()), (PARTNER, PARTNER, replayed), strict=True
    ):
        refused = process.post("/referrals", json=body, headers=headers)
        assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "unauthenticated"
    assert store.head() == head
