"""Fixtures: each Redis test runs on fakeredis *and* on a real redis-server.

The real server is one this session starts on a free port (or ``REDIS_TEST_URL``
when given). If it cannot be started or reached, the tests fail: they never skip.
"""

from __future__ import annotations

import gc
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis
from flask.testing import FlaskClient

from services.intake.app import create_app as create_intake
from services.reporting.app import create_app as create_reporting
from shared.bootstrap import event_store
from shared.config import DEVELOPMENT_SECRETS, Settings
from shared.embedded import install_shims
from shared.eventstore import EventStore
from tests.support import auth, grant_test_keys

# Tests are development: the processes they start (workers, the suite on a test Redis) use the development keys.
os.environ.update({name: os.environ.get(name, value) for name, value in DEVELOPMENT_SECRETS.items()})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis_server(directory: Path, *extra: str, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (scripts/ensure-test-tools installs it)")
    port = port or free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            redis.Redis.from_url(url).ping()
            return process, url
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    pytest.fail(f"redis-server did not answer on port {port}")


@pytest.fixture(autouse=True)
def gc_thresholds_restored() -> Iterator[None]:
    """The rebuild command makes full collections rare for the process it runs in (shared.gc_tuning): here,
    pytest's. Each test starts with the thresholds the one before it started with."""
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.fixture(scope="session")
def real_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("REDIS_TEST_URL")
    if given:
        try:
            redis.Redis.from_url(given).ping()
        except redis.ConnectionError as e:
            pytest.fail(f"REDIS_TEST_URL={given} cannot be reached: {e}")
        yield given
        return
    process, url = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(params=["fakeredis", "real-redis"])
def connection(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    if request.param == "fakeredis":
        install_shims()  # INFO for RQ, and a BLMOVE that blocks (shared.embedded)
        yield fakeredis.FakeRedis()
        return
    conn = redis.Redis.from_url(request.getfixturevalue("real_redis_url"))
    conn.flushdb()
    yield conn
    conn.flushdb()


@pytest.fixture
def real_connection(real_redis_url: str) -> Iterator[redis.Redis]:
    """For tests that need several processes on one server."""
    conn = redis.Redis.from_url(real_redis_url)
    conn.flushdb()
    yield conn
    conn.flushdb()


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({})


@pytest.fixture
def store(connection: redis.Redis, settings: Settings) -> EventStore:
    return event_store(connection, settings)


@pytest.fixture
def keys(store: EventStore) -> None:
    grant_test_keys(store)


@pytest.fixture
def intake(connection: redis.Redis, settings: Settings, keys: None) -> FlaskClient:
    return create_intake(connection, settings).test_client()


@pytest.fixture
def reporting(connection: redis.Redis, settings: Settings, keys: None) -> FlaskClient:
    return create_reporting(connection, settings).test_client()


PARTNER = auth("reden")  # a referring NGO
STAFF = auth("coordinator")  # the programme's coordinator

# Like the Copenhagen "exit prostitution" project: recruitment Jan-Mar 2016, funding to 31 Dec 2016, 12-month courses.
COPENHAGEN = {
    "programme_id": "demo-cph",
    "name": "Exit prostitution (Copenhagen)",
    "methods": ["cti"],
    "course_months": 12,
    "phases": [{"name": "phase_1", "months": 4}, {"name": "phase_2", "months": 4}, {"name": "phase_3", "months": 4}],
    "recruitment_start": "2016-01-01",
    "recruitment_end": "2016-03-31",
    "funding_end": "2016-12-31",
    "caseload_limit": 10,
    "purposes": ["exit_prostitution", "improve_life_situation"],
    "targets": {"cti": 20},
}


@pytest.fixture
def cph(intake: FlaskClient) -> str:
    response = intake.post("/programmes", json=COPENHAGEN, headers=STAFF)
    assert response.status_code == 201, response.get_json()
    return str(COPENHAGEN["programme_id"])


def referral_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "programme_id": "demo-cph",
        "consent": {"given": True},
        "citizen": {"alias": "Maja"},
        "referred_on": "2016-01-15",
    }
    body.update(overrides)
    return body


@pytest.fixture
def cti_and_icm(intake: FlaskClient) -> str:
    """A programme running ICM beside CTI, with one worker of each and room for one citizen each."""
    defined = intake.post(
        "/programmes", json=COPENHAGEN | {"methods": ["cti", "icm"], "targets": {"cti": 20, "icm": 10}}, headers=STAFF
    )
    assert defined.status_code == 201, defined.get_json()
    for worker_id, method in (("anna", "cti"), ("frej", "icm")):
        body = {"worker_id": worker_id, "method": method, "capacity": 1, "on": "2016-01-02"}
        assert intake.post("/programmes/demo-cph/workers", json=body, headers=STAFF).status_code == 201
    return str(COPENHAGEN["programme_id"])
