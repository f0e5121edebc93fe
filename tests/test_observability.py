"""Structured logs carry the request id from intake into the worker; metrics in Prometheus format."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from shared.config import Settings
from shared.eventstore import EventStore
from shared.http import under_gunicorn
from shared.logs import configure_logging
from tests.conftest import PARTNER, STAFF, free_port, referral_body
from tests.support import run_workers
from tests.test_deployment import ROOT, compose


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("test", stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_the_request_id_follows_the_referral_into_the_workers_log(
    intake: FlaskClient, cph: str, connection: redis.Redis, json_log: io.StringIO
) -> None:
    run_workers(connection)  # nudges are deduplicated per partition: start with none waiting
    response = intake.post(
        "/referrals",
        json=referral_body(citizen={"alias": "Maja Hansen"}),
        headers={**PARTNER, "X-Request-Id": "4bf92f3577b34da6a3ce929d0e0e4736"},
    )
    assert response.headers["X-Request-Id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    run_workers(connection)
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    assert all(set(line) >= {"ts", "level", "service", "logger", "message", "request_id"} for line in lines)
    mine = [line for line in lines if line["request_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"]
    assert any(line["message"] == "POST /referrals 201" for line in mine)
    assert any(line["logger"] == "shared.projections" and "applied" in line["message"] for line in mine)
    assert "Maja" not in json_log.getvalue()


def test_a_request_id_that_is_not_a_uuid_is_replaced_before_it_reaches_a_log_or_the_log(
    intake: FlaskClient, cph: str, store: EventStore
) -> None:
    """A client's request id is kept in every log line and every event's metadata for good: only a UUID's
    shape is taken, so a name or a CPR number sent as one is not."""
    for given in ("0101901234", "MajaHansen", "req4711"):
        response = intake.post("/referrals", json=referral_body(), headers={**PARTNER, "X-Request-Id": given})
        assert response.status_code == 201
        ours = response.headers["X-Request-Id"]
        assert ours != given and len(ours) == 32
        assert store.read_stream(response.get_json()["case_id"])[0].metadata["request_id"] == ours


def test_metrics_in_prometheus_format(intake: FlaskClient, cph: str, connection: redis.Redis) -> None:
    intake.post("/referrals", json=referral_body(), headers=PARTNER)
    intake.post("/referrals", json={}, headers=PARTNER)  # a 422
    before = intake.get("/metrics").get_data(as_text=True)
    assert 'caseflow_http_requests_total{endpoint="referrals.create_referral",service="intake",status="201"}' in before
    assert 'status="422"' in before
    assert 'caseflow_events_appended_total{type="ReferralReceived"}' in before
    assert 'caseflow_http_request_seconds_bucket{endpoint="referrals.create_referral"' in before
    assert 'caseflow_queue_jobs{queue="cf.caseflow",state="queued"}' in before

    def lag(text: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith('caseflow_projection_lag{projection="caseflow"}'))
        return float(line.split()[-1])

    assert lag(before) > 0
    run_workers(connection)
    assert lag(intake.get("/metrics").get_data(as_text=True)) == 0


def test_each_request_is_counted_once_under_its_endpoint_and_its_own_status(intake: FlaskClient, cph: str) -> None:
    """The service keeps each (endpoint, status)'s counter at hand (shared.metrics): a referral refused after
    one accepted must not be counted under the accepted one's status, nor the other way round (the counters are
    the process's, so what an earlier test counted is taken off)."""
    counted = 'caseflow_http_requests_total{endpoint="referrals.create_referral",service="intake",status='
    names = (
        counted + '"201"}',
        counted + '"422"}',
        'caseflow_http_request_seconds_count{endpoint="referrals.create_referral"',
    )

    def figures() -> list[float]:
        lines = intake.get("/metrics").get_data(as_text=True).splitlines()
        return [sum(float(line.split()[-1]) for line in lines if line.startswith(name)) for name in names]

    before = figures()
    for body in (referral_body(), {}, referral_body(), {}, {}):
        intake.post("/referrals", json=body, headers=PARTNER)
    assert [after - earlier for after, earlier in zip(figures(), before, strict=True)] == [2, 3, 5]


def test_metrics_and_readiness_figures_ask_for_the_token_when_one_is_set(connection: redis.Redis, keys: None) -> None:
    """The figures say how much the suite does (events by type, requests, jobs, lag, the log's length): for the
    operators' Prometheus, not for whoever reaches the port. /readyz still gives a load balancer its status.
    Compose requires a token; without one (the local suite, tests) neither asks for one."""
    from services.intake.app import create_app as create_intake
    from services.reporting.app import create_app as create_reporting

    settings = Settings.from_env({"CASEFLOW_METRICS_TOKEN": "scrape-token"})
    for create in (create_intake, create_reporting):
        client = create(connection, settings).test_client()
        refusals: tuple[dict[str, str], ...] = (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer "},
            STAFF,
        )
        for refused in (*refusals, {"Authorization": "scrape-token"}):
            response = client.get("/metrics", headers=refused)
            assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthenticated"
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert "caseflow_" not in response.get_data(as_text=True)
            assert client.get("/readyz", headers=refused).get_json() == {"status": "ready"}
        for scheme in ("Bearer", "bearer"):
            token = {"Authorization": f"{scheme} scrape-token"}
            scraped = client.get("/metrics", headers=token)
            assert scraped.status_code == 200 and "caseflow_log_head" in scraped.get_data(as_text=True)
            assert "log_head" in client.get("/readyz", headers=token).get_json()
        untokened = create(connection, Settings.from_env({})).test_client()
        assert untokened.get("/metrics").status_code == 200 and "log_head" in untokened.get("/readyz").get_json()
    with pytest.raises(ValueError, match="CASEFLOW_METRICS_TOKEN is still the example's placeholder"):
        Settings.from_env({"CASEFLOW_METRICS_TOKEN": "change-me"})


def test_a_deployed_app_logs_json_lines_that_name_an_exception_but_never_repeat_its_message(
    connection: redis.Redis, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under gunicorn (``services.intake.app:wsgi()``, as in docker-compose.yml) logging is set up as for the
    local suite: without it, Python's fallback printed an unhandled exception's whole message and traceback."""
    from services.intake.app import create_app

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        app = under_gunicorn(lambda: create_app(connection, settings), "intake")

        def boom() -> str:
            raise KeyError("Maja Jensen 0101901234")

        app.add_url_rule("/boom", view_func=boom)
        assert app.test_client().get("/boom").status_code == 500
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert any(line["service"] == "intake" and line["message"] == "GET /boom 500" for line in lines)
    assert any("KeyError" in json.dumps(line) for line in lines)
    assert "Maja" not in json.dumps(lines) and "0101901234" not in json.dumps(lines)


@pytest.mark.slow
def test_metrics_under_gunicorn_count_every_workers_requests_whichever_worker_answers(
    real_redis_url: str, tmp_path: Path
) -> None:
    """Compose runs each HTTP service as gunicorn with two worker processes; a scrape is answered by one of them,
    and must count the requests both served (prometheus_client's multiprocess mode, see shared.gunicorn_conf)."""
    command = next(c for c in compose()["services"]["intake"]["command"] if c.endswith(":wsgi()"))
    gunicorn_args = compose()["services"]["intake"]["command"][1:]
    port = free_port()
    args = [a if not a.startswith("0.0.0.0:") else f"127.0.0.1:{port}" for a in gunicorn_args]
    assert command in args
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), *args],
        env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        | {"REDIS_URL": real_redis_url, "CASEFLOW_METRICS_TOKEN": "scrape-token"},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{base}/healthz")
        # A sync worker that has accepted a connection waits for its request: holding one connection open
        # occupies one worker, so the other serves; then the other is held, and the first serves.
        with socket.create_connection(("127.0.0.1", port)) as first_held:
            time.sleep(0.3)
            get_healthz(base, 20)
            with socket.create_connection(("127.0.0.1", port)):
                time.sleep(0.3)
                first_held.close()
                get_healthz(base, 20)
        scrape = urllib.request.Request(f"{base}/metrics", headers={"Authorization": "Bearer scrape-token"})
        served = [requests_to_healthz(urllib.request.urlopen(scrape).read().decode()) for _ in range(6)]
        assert served == [41] * 6  # the 40 and the one that found the server up, in every scrape
        with pytest.raises(urllib.error.HTTPError) as unauthenticated:
            urllib.request.urlopen(f"{base}/metrics")
        assert unauthenticated.value.code == 401
    finally:
        server.terminate()
        server.wait(timeout=30)


def get_healthz(base: str, times: int) -> None:
    assert [urllib.request.urlopen(f"{base}/healthz").status for _ in range(times)] == [200] * times


def requests_to_healthz(metrics: str) -> int:
    return sum(
        int(float(line.split()[-1]))
        for line in metrics.splitlines()
        if line.startswith("caseflow_http_requests_total{") and 'endpoint="healthz"' in line
    )


def wait_until_answering(url: str) -> None:
    for _ in range(200):
        try:
            urllib.request.urlopen(url)
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{url} never answered")


def test_no_log_line_repeats_a_path_as_the_client_sent_it(real_redis_url: str) -> None:
    """A client may type a name or a CPR number into a path (a case id by hand, a malformed request): the
    service logs the route it matched, and Flask's own server, which logs every request line, says nothing."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "from services.intake.app import main; main()"],
        env={**os.environ, "REDIS_URL": real_redis_url, "INTAKE_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "intake did not start"
                time.sleep(0.2)
        statuses = []
        for path in ("/cases/Maja-Hansen-0101901234", "/nowhere/Maja-Hansen-0101901234"):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5)
            except urllib.error.HTTPError as refused:
                statuses.append(refused.code)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:  # a request line no server accepts
            raw.sendall(b"GET /Maja Hansen 0101901234 HTTP/1.1\r\n\r\n")
            assert b" 400 " in raw.recv(200)
    finally:
        server.terminate()
        _, err = server.communicate(timeout=10)
    assert statuses == [401, 404]
    messages = [json.loads(line)["message"] for line in err.splitlines() if line.startswith("{")]
    assert "GET /cases/<case_id> 401" in messages and "GET (no route) 404" in messages
    assert "Maja" not in err and "0101901234" not in err
