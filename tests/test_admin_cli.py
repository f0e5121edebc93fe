"""The admin command: partners and keys as events; a key is shown once, stored as a hash, revocable."""

from __future__ import annotations

import redis
from flask import Flask

from services.intake.app import create_app
from shared.config import Settings
from tests.conftest import COPENHAGEN


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
