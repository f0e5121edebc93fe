"""The compose file parses and every service runs something that exists (no Docker engine needed)."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from rq.cron import CronScheduler

from shared.config import DEVELOPMENT_SECRETS, PLACEHOLDER, Settings
from shared.worker import ROLES, WORKER_TTL_S, alive_here, alive_main, suite_worker
from tests.support import spawn_worker, stop_workers

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def console_scripts() -> dict[str, str]:
    scripts: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    return scripts


def resolve(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute.removesuffix("()"))


def test_every_service_command_exists() -> None:
    services = compose()["services"]
    assert {"redis", "intake", "reporting", "caseflow", "reporting-worker", "scheduler"} <= set(services)
    scripts = console_scripts()
    for name, service in services.items():
        if name in ("redis", "rq-dashboard"):
            continue
        command = service["command"]
        if command[0] == "gunicorn":
            assert callable(resolve(command[-1])), name
        else:
            assert command[0] in scripts, f"{name}: {command[0]} is not a console script"
            assert callable(resolve(scripts[command[0]])), name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert "REDIS_URL" in service["environment"], name


def test_each_http_service_is_checked_by_its_own_healthz(connection: redis.Redis) -> None:
    """The healthcheck compose runs in the container, run here against the real app on the port it binds, and
    against a port where nothing answers."""
    from werkzeug.serving import make_server

    from services.reporting.app import create_app

    for name in ("intake", "reporting"):
        service = compose()["services"][name]
        port = service["command"][service["command"].index("--bind") + 1].rsplit(":", 1)[1]
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"] and f"127.0.0.1:{port}/healthz" in test[3], name
    server = make_server("127.0.0.1", 0, create_app(connection, Settings.from_env({})))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check = test[3].replace(":8000/", f":{server.server_port}/")
        assert subprocess.run([sys.executable, "-c", check], timeout=30).returncode == 0
    finally:
        server.shutdown()
    unreachable = subprocess.run([sys.executable, "-c", check], capture_output=True, timeout=30)
    assert unreachable.returncode != 0


def test_each_worker_and_the_scheduler_is_checked_by_its_own_registration(connection: redis.Redis) -> None:
    """A worker's or the scheduler's healthcheck asks RQ whether a process of its role is registered from its
    own container (host): a registration that stopped heartbeating lapses, and one that stopped cleanly is gone."""
    services, scripts = compose()["services"], console_scripts()
    for name, role in (("caseflow", "caseflow"), ("reporting-worker", "reporting"), ("scheduler", "scheduler")):
        assert services[name]["healthcheck"]["test"] == ["CMD", "caseflow-alive", role], name
    assert resolve(scripts["caseflow-alive"]) is alive_main
    prefix = Settings.from_env({}).key_prefix

    def roles() -> set[str]:
        return {role for role in ROLES if alive_here(connection, prefix, role)}

    assert roles() == set()
    worker = suite_worker(connection, prefix, "caseflow")
    worker.register_birth()  # type: ignore[no-untyped-call]
    worker.heartbeat()
    assert roles() == {"caseflow"} and not alive_here(connection, prefix, "caseflow", hostname="another-container")
    assert 0 < connection.ttl(worker.key) <= WORKER_TTL_S + 60  # a hung worker lapses within two minutes
    worker.register_death()  # type: ignore[no-untyped-call]
    assert roles() == set()

    hung = suite_worker(connection, prefix, "reporting")
    hung.register_birth()  # type: ignore[no-untyped-call]
    assert roles() == {"reporting"}
    connection.pexpire(hung.key, 1)  # its heartbeats stopped: the registration lapses
    time.sleep(0.05)
    assert roles() == set()

    scheduler = CronScheduler(connection=connection)
    scheduler.register_birth()
    assert roles() == {"scheduler"}
    connection.pexpire(scheduler.key, 1)
    time.sleep(0.05)
    assert roles() == set()
    assert alive_main(["nothing"]) == 2


def test_a_worker_whose_pubsub_thread_read_its_unsubscription_first_stops_at_once(connection: redis.Redis) -> None:
    """RQ stops a worker's pubsub thread by unsubscribing and then stopping it. A thread that reads the reply to the
    unsubscription before the stop goes back to waiting for a subscription, for as long as it sleeps (RQ: a minute),
    and redis-py 8's stop waits for it (``SuiteWorker.subscribe``). Here it has read the reply before the stop."""
    worker = suite_worker(connection, Settings.from_env({}).key_prefix, "caseflow")
    worker.subscribe()
    pubsub = worker.pubsub
    assert pubsub is not None
    deadline = time.monotonic() + 10
    while not pubsub.subscribed and time.monotonic() < deadline:
        time.sleep(0.01)
    pubsub.unsubscribe()  # type: ignore[no-untyped-call]
    while pubsub.subscribed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not pubsub.subscribed  # the thread read the reply, and waits for a subscription again
    time.sleep(0.1)
    stopping = threading.Thread(target=worker.unsubscribe, daemon=True)
    stopping.start()
    stopping.join(timeout=20)  # a liveness bound, not a speed target: before, it waited out RQ's minute
    assert not stopping.is_alive()


def test_a_running_worker_process_is_alive_and_one_stopped_is_not(
    real_connection: redis.Redis, real_redis_url: str
) -> None:
    """``caseflow-alive`` as the container runs it, beside a real worker process."""
    environment = {**os.environ, "REDIS_URL": real_redis_url}
    alive = [sys.executable, "-c", "import sys; from shared.worker import alive_main; sys.exit(alive_main())"]
    worker = spawn_worker("caseflow", real_redis_url)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([*alive, "caseflow"], env=environment, capture_output=True).returncode != 0:
            assert worker.poll() is None and time.monotonic() < deadline, "the worker never registered"
            time.sleep(0.2)
        missing = subprocess.run([*alive, "scheduler"], env=environment, capture_output=True, text=True)
        assert missing.returncode == 1 and "no live scheduler process" in missing.stderr
    finally:
        stop_workers([worker])
    assert subprocess.run([*alive, "caseflow"], env=environment, capture_output=True).returncode == 1
    unset = {k: v for k, v in environment.items() if k != "REDIS_URL"}
    nowhere = subprocess.run([*alive, "caseflow"], env=unset, capture_output=True, text=True)
    assert (
        nowhere.returncode == 1
        and nowhere.stderr.startswith("configuration: REDIS_URL is not set")
        and "Traceback" not in nowhere.stderr
    )


def test_redis_keeps_the_log_on_disk() -> None:
    redis = compose()["services"]["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert redis["command"][redis["command"].index("--appendfsync") + 1] == "everysec"
    assert redis["volumes"] and redis["healthcheck"]["test"]


def test_every_service_comes_back_after_a_crash_or_a_reboot() -> None:
    """Redis had no restart policy: after a reboot the apps came back and waited on a log that did not."""
    assert all(service.get("restart") == "unless-stopped" for service in compose()["services"].values())


def test_workers_can_be_scaled() -> None:
    for name in ("caseflow", "reporting-worker"):
        service = compose()["services"][name]
        assert "ports" not in service and "container_name" not in service, name


SECRETS = ("CASEFLOW_CPR_SECRET", "CASEFLOW_MASTER_KEY", "CASEFLOW_SESSION_SECRET")


def test_a_deployment_names_its_own_secrets() -> None:
    """Compose gives the secrets no default (it stops and names the one missing), and no service starts with
    the example file's placeholder."""
    for name in ("intake", "reporting", "caseflow", "reporting-worker", "scheduler"):
        environment = compose()["services"][name]["environment"]
        for secret in SECRETS:
            assert environment[secret].startswith(f"${{{secret}:?"), (name, secret)
        assert environment["CASEFLOW_METRICS_TOKEN"].startswith("${CASEFLOW_METRICS_TOKEN:?"), name
    for secret in SECRETS:
        with pytest.raises(ValueError, match=secret):
            Settings.from_env({secret: PLACEHOLDER})
    assert Settings.from_env({secret: "a-real-secret" for secret in SECRETS}).master_key == b"a-real-secret"


def test_a_process_with_a_redis_of_its_own_refuses_to_start_on_the_development_keys(tmp_path: Path) -> None:
    """Outside compose (systemd, Kubernetes), a service given REDIS_URL but no secrets would seal citizens' data
    and pseudonymise CPR numbers with keys anyone can read here: it refuses, naming the secret, and so does the
    local runner on a Redis of its own. Only where no Redis is configured (tests) are they the defaults."""
    for store in ({"REDIS_URL": "redis://redis:6379/0"}, {"REDIS_SENTINELS": "sentinel:26379"}):
        with pytest.raises(ValueError, match="CASEFLOW_CPR_SECRET is not set"):
            Settings.from_env(store)
        assert Settings.from_env(store | {s: "own" for s in SECRETS}).cpr_hmac_secret == b"own"
        with pytest.raises(ValueError, match="CASEFLOW_MASTER_KEY is empty"):
            Settings.from_env(store | {s: "own" for s in SECRETS} | {"CASEFLOW_MASTER_KEY": " "})
    assert Settings.from_env({"REDIS_SENTINELS": ""}).master_key == DEVELOPMENT_SECRETS["CASEFLOW_MASTER_KEY"].encode()

    bare = {k: v for k, v in os.environ.items() if k not in SECRETS} | {"REDIS_URL": "redis://127.0.0.1:1/0"}
    for command in ("from services.intake.app import wsgi; wsgi()", "from shared.suite import main; main()"):
        started = subprocess.run(
            [sys.executable, "-c", command, "up"], env=bare, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert started.returncode != 0 and "CASEFLOW_CPR_SECRET is not set" in started.stderr, command
    assert not (tmp_path / ".suite").exists()  # the runner started nothing


def test_docker_compose_accepts_the_file() -> None:
    """Checked with the docker client when it has the compose plugin (no engine is needed to parse): with the
    secrets set it is accepted, without them refused."""
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        return  # the YAML checks above still ran; the client is optional on a developer machine
    bare = {k: v for k, v in os.environ.items() if k not in SECRETS}
    config = [docker, "compose", "--env-file", os.devnull, "config", "--quiet"]
    given = dict.fromkeys((*SECRETS, "CASEFLOW_METRICS_TOKEN"), "s")
    set_up = subprocess.run(config, cwd=ROOT, capture_output=True, text=True, env=bare | given)
    assert set_up.returncode == 0, set_up.stderr
    missing = subprocess.run(config, cwd=ROOT, capture_output=True, text=True, env=bare)
    assert missing.returncode != 0 and "CASEFLOW_CPR_SECRET" in missing.stderr


def test_the_package_ships_the_reporting_templates() -> None:
    """A plain `pip install .` (as in the Dockerfile) must carry the dashboard's templates."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["services.reporting"]
    templates = sorted((ROOT / "services/reporting/templates").glob("*.html"))
    assert templates and all(
        any(t.relative_to(ROOT / "services/reporting").match(p) for p in patterns) for t in templates
    )


def test_env_example_documents_every_setting() -> None:
    import re

    source = (ROOT / "shared/config.py").read_text()
    read = set(re.findall(r'(?:env\.get\(|_secret\(env, )"([A-Z_]+)"', source))
    documented = {
        line.split("=")[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert read and read == documented


def test_rq_dashboard_watches_the_same_redis() -> None:
    dashboard = compose()["services"]["rq-dashboard"]
    assert dashboard["environment"]["RQ_DASHBOARD_REDIS_URL"] == "redis://redis:6379/0"
