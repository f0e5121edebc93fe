"""Faults with real processes on a real Redis: workers killed again and again, Redis restarted under load."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis
from rq.registry import FailedJobRegistry, StartedJobRegistry

from services.caseflow.projection import CaseflowProjection
from services.reporting.projection import ReportingProjection
from shared.bootstrap import event_store
from shared.config import DEVELOPMENT_SECRETS, Settings
from shared.nudges import enqueue_sweeps, requeue_failed
from shared.projections import ProjectionRunner, replay
from tests.support import generate_log, run_workers, snapshot, spawn_worker, stop_workers, suite_queue


def spawn(kind: str, url: str) -> subprocess.Popen[bytes]:
    return spawn_worker(kind, url, CASEFLOW_LEASE_TTL_MS="1000", CASEFLOW_BATCH_SIZE="40")


def wait_caught_up(store: object, connection: redis.Redis, seconds: float = 120) -> list[ProjectionRunner]:
    runners = [ProjectionRunner(store, p) for p in (CaseflowProjection(), ReportingProjection())]  # type: ignore[arg-type]
    deadline = time.monotonic() + seconds
    while not all(r.is_caught_up() for r in runners):
        assert time.monotonic() < deadline, "the workers did not catch up"
        enqueue_sweeps(connection, "cf")  # what the scheduler does every 30 s
        time.sleep(0.5)
    return runners


@pytest.mark.slow
def test_workers_killed_again_and_again_leave_exactly_the_replay_state(
    real_connection: redis.Redis, real_redis_url: str
) -> None:
    store = event_store(real_connection, Settings.from_env({}))
    kinds = ["caseflow", "caseflow", "caseflow", "reporting", "reporting"]
    workers = [(kind, spawn(kind, real_redis_url)) for kind in kinds]
    appended: list[int] = []
    feeder = threading.Thread(target=lambda: appended.append(generate_log(store, cases=1600, seed=21, nudge=True)))
    rng = random.Random(8)
    kills = 0
    try:
        feeder.start()
        while feeder.is_alive() or kills < 8:
            time.sleep(rng.uniform(0.2, 0.6))
            index = rng.randrange(len(workers))
            kind, victim = workers[index]
            victim.send_signal(signal.SIGKILL)  # mid-batch, mid-job, whenever
            victim.wait(timeout=10)
            workers[index] = (kind, spawn(kind, real_redis_url))
            kills += 1
        feeder.join()
        assert appended[0] == store.head() >= 3000
        runners = wait_caught_up(store, real_connection)
    finally:
        stop_workers([w for _, w in workers])

    for runner in runners:
        namespace = f"reference:{runner.projection.name}"
        assert replay(store, runner.projection, namespace) == store.head()
        assert snapshot(real_connection, runner.namespace) == snapshot(real_connection, namespace)

    # The jobs the killed workers held: RQ's cleanup finds them abandoned (their workers are gone) and moves
    # them to the failed registry; re-running them is harmless, because the log, not the job, is the work.
    stale = 0
    for name in ("caseflow", "reporting"):
        started = StartedJobRegistry(queue=suite_queue(real_connection, name))
        started.cleanup(int(time.time()) + 10_000)
        stale += FailedJobRegistry(queue=suite_queue(real_connection, name)).count
        assert started.count == 0, "no job is left stuck as started"
    assert stale <= kills
    requeue_failed(real_connection, "cf")
    run_workers(real_connection)
    for runner in runners:
        assert snapshot(real_connection, runner.namespace) == snapshot(
            real_connection, f"reference:{runner.projection.name}"
        )


@pytest.mark.slow
def test_a_redis_restart_under_load_loses_no_answered_request(tmp_path: Path) -> None:
    import json
    import urllib.error
    import urllib.request

    from werkzeug.serving import make_server

    from services.intake.app import create_app
    from shared.bootstrap import connect
    from tests.conftest import COPENHAGEN, STAFF, referral_body, start_redis_server
    from tests.support import grant_test_keys

    extra = ("--appendonly", "yes", "--appendfsync", "everysec")
    server, url = start_redis_server(tmp_path, *extra)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    settings = Settings.from_env({**DEVELOPMENT_SECRETS, "REDIS_URL": url})
    connection = connect(settings)  # the services' own client: it retries through the restart
    store = event_store(connection, settings)
    grant_test_keys(store)
    app = create_app(connection, settings)
    assert app.test_client().post("/programmes", json=COPENHAGEN, headers=STAFF).status_code == 201
    http = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    workers = [spawn("caseflow", url), spawn("reporting", url)]
    answered: dict[str, str] = {}  # idempotency key -> case id, for every 201

    def partner(index: int) -> None:
        for n in range(100):
            key = f"load-{index}-{n}"
            request = urllib.request.Request(
                f"http://127.0.0.1:{http.server_port}/referrals",
                data=json.dumps(referral_body()).encode(),
                headers={**STAFF, "Content-Type": "application/json", "Idempotency-Key": key},
            )
            for _ in range(60):  # a client that retries the same request, as partners are told to
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        answered[key] = json.loads(response.read())["case_id"]
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    time.sleep(0.2)

    clients = [threading.Thread(target=partner, args=(i,)) for i in range(4)]
    try:
        for c in clients:
            c.start()
        deadline = time.monotonic() + 30
        while len(answered) < 60:  # restart once the load is well under way
            assert time.monotonic() < deadline
            time.sleep(0.01)
        at_restart = len(answered)
        server.send_signal(signal.SIGTERM)  # Redis writes its AOF and stops
        server.wait(timeout=20)
        server, _ = start_redis_server(tmp_path, *extra, port=port)  # the same data directory: its AOF
        for c in clients:
            c.join(timeout=120)
        assert 0 < at_restart < 400, "the restart should fall in the middle of the load"
        assert len(answered) == 400, f"only {len(answered)} of 400 referrals were answered"
        referrals = [e for e in store.read_all(limit=10_000) if e.event_type == "ReferralReceived"]
        assert len(referrals) == 400  # each answered once, none twice despite the retries
        assert {e.stream_id for e in referrals} == set(answered.values())
        runners = wait_caught_up(store, connection)
        for runner in runners:  # the workers resumed from their checkpoints: exactly the replay state
            replay(store, runner.projection, f"reference:{runner.projection.name}")
            reference = snapshot(connection, f"reference:{runner.projection.name}")
            assert snapshot(connection, runner.namespace) == reference
    finally:
        stop_workers(workers)
        http.shutdown()
        server.terminate()
        server.wait(timeout=20)
