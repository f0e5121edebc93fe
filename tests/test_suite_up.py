"""The README's run command, as a new user runs it: no Redis configured, embedded store, demo loaded."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, start_redis_server


def call(url: str, key: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body else None,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def start_suite(
    tmp_path: Path, env: dict[str, str], *args: str, group: bool = False, prelude: str = ""
) -> tuple[subprocess.Popen[str], str]:
    """``caseflow-suite up`` as the README's run command starts it, and what it printed until it was up; with
    ``group``, in a process group of its own, as a service manager starts it; ``prelude``, code run before it."""
    suite = subprocess.Popen(
        [sys.executable, "-c", prelude + "from shared.suite import main; main()", "up", *args],
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        start_new_session=group,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 90
    assert suite.stdout is not None
    while not any("Ctrl-C stops everything" in line for line in lines):
        if time.monotonic() > deadline or suite.poll() is not None:
            suite.kill()
            raise AssertionError("".join(lines) + (suite.communicate()[0] or ""))
        lines.append(suite.stdout.readline())
    return suite, "".join(lines)


def stop_suite(suite: subprocess.Popen[str]) -> str:
    suite.send_signal(signal.SIGINT)
    return ended_cleanly(suite, timeout_s=30)


def ended_cleanly(suite: subprocess.Popen[str], timeout_s: float = 60) -> str:
    """What a suite told to stop printed until it ended, having ended with success and no traceback."""
    rest, _ = suite.communicate(timeout=timeout_s)
    assert suite.returncode == 0, rest
    assert "stopping" in rest and "Traceback" not in rest
    return rest


def ports_env() -> tuple[int, int, dict[str, str]]:
    intake_port, reporting_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return intake_port, reporting_port, env | {"INTAKE_PORT": str(intake_port), "REPORTING_PORT": str(reporting_port)}


@pytest.mark.slow
def test_suite_up_runs_everything_on_the_embedded_store_and_stops_cleanly(tmp_path: Path) -> None:
    intake_port, reporting_port, env = ports_env()
    suite, output = start_suite(tmp_path, env | {"EMBEDDED_REDIS_PORT": str(free_port())}, "--demo-citizens", "2")
    deadline = time.monotonic() + 90
    try:
        assert "EMBEDDED in-memory store" in output and "NOT durable" in output
        example = output.split("-d '", 1)[1].split("'\n", 1)[0]
        assert json.loads(example)["programme_id"] == "demo-cph"  # the printed curl example works
        report_text = output.split("from the reporting service:")[1]
        report, _ = json.JSONDecoder().raw_decode(report_text.strip())
        assert report["caught_up"] is True
        assert report["total"]["referrals"] == 4
        assert {p["partner"]: p["referrals"] for p in report["partners"]}["reden"] == 2

        keys = dict(
            line.removeprefix("export ").split("=", 1)
            for line in (tmp_path / ".suite/demo-keys.env").read_text().splitlines()
        )
        assert oct((tmp_path / ".suite/demo-keys.env").stat().st_mode & 0o777) == "0o600"
        reporting = f"http://127.0.0.1:{reporting_port}/programmes/demo-cph/referrals-per-partner"
        call(
            f"http://127.0.0.1:{intake_port}/referrals",
            keys["REDEN_KEY"],
            {"programme_id": "demo-cph", "consent": {"given": True}, "citizen": {"alias": "Maja"}},
        )
        while call(reporting, keys["COORDINATOR_KEY"])["total"]["referrals"] != 5:
            assert time.monotonic() < deadline, "the new referral never reached reporting"
            time.sleep(0.2)
        assert call(f"http://127.0.0.1:{intake_port}/readyz", "")["durable"] is False
        # The operators' commands on the embedded store, with what the suite wrote for them (and printed)
        store_env = dict(
            line.removeprefix("export ").split("=", 1)
            for line in (tmp_path / ".suite/store.env").read_text().splitlines()
        )
        assert "source .suite/store.env;" in output
        flask = str(Path(sys.executable).parent / "flask")
        status = subprocess.run(
            [flask, "--app", "services.reporting.app", "projections", "status"],
            env=env | store_env,
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert status.returncode == 0 and "caseflow\tcf:proj:caseflow" in status.stdout, status.stderr
    finally:
        rest = stop_suite(suite)
    assert "stopping" in rest
    assert not (tmp_path / ".suite/store.env").exists()  # it names a store that has gone
    assert "Worker" in (tmp_path / ".suite/logs/caseflow-worker.log").read_text()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{intake_port}/healthz", timeout=2)


@pytest.mark.slow
@pytest.mark.parametrize("signals", [1, 2])
def test_a_stop_signalled_to_the_whole_group_ends_the_suite_cleanly(tmp_path: Path, signals: int) -> None:
    """A service manager stops the suite by signalling its whole process group, and an impatient one (or user)
    signals again: a second signal used to interrupt the suite's wait for its children, and it died with a
    traceback, its embedded store gone under children still stopping. Now it kills them at once and ends cleanly."""
    _, _, env = ports_env()
    suite, _ = start_suite(tmp_path, env | {"EMBEDDED_REDIS_PORT": str(free_port())}, "--no-demo", group=True)
    for _ in range(signals):
        os.killpg(suite.pid, signal.SIGTERM)
        time.sleep(0.3)
    ended_cleanly(suite)
    for log in (tmp_path / ".suite/logs").glob("*.log"):
        assert "Traceback" not in log.read_text(), log.name


WIDENED_POLL = (  # the moment between a child's poll taking its wait lock and the try that gives it back, widened
    "import subprocess, time\n"
    "poll = subprocess.Popen._internal_poll\n"
    "def widened(self, *args, **kwargs):\n"
    "    if self.returncode is None and self._waitpid_lock.acquire(False):\n"
    "        print('inside a poll', flush=True)\n"
    "        time.sleep(0.3)\n"
    "        self._waitpid_lock.release()\n"
    "    return poll(self, *args, **kwargs)\n"
    "subprocess.Popen._internal_poll = widened\n"
)


@pytest.mark.slow
def test_a_stop_signal_landing_inside_a_childs_poll_still_stops_the_suite(tmp_path: Path) -> None:
    """The suite's handler used to raise wherever the suite was: inside a poll of a child, before the try that
    gives the child's wait lock back, it left the lock held, and the stop then waited for that child for ever (seen
    once in make test, a minute's timeout). Once the suite is up, a stop signal only says so to its loop."""
    _, _, env = ports_env()
    suite, _ = start_suite(tmp_path, env | {"EMBEDDED_REDIS_PORT": str(free_port())}, "--no-demo", prelude=WIDENED_POLL)
    assert suite.stdout is not None
    while "inside a poll" not in suite.stdout.readline():
        assert suite.poll() is None
    suite.send_signal(signal.SIGTERM)
    ended_cleanly(suite)


@pytest.mark.slow
def test_a_second_run_on_the_same_redis_keeps_the_demo_loaded_by_the_first(tmp_path: Path) -> None:
    """A configured Redis outlives the suite: the next run finds the demo there and leaves it, instead of
    stopping on the programme that exists."""
    server, url = start_redis_server(tmp_path)
    try:
        for run in ("first", "second"):
            _, reporting_port, env = ports_env()
            suite, output = start_suite(tmp_path, env | {"REDIS_URL": url}, "--demo-citizens", "0")
            try:
                assert ("in this Redis already" in output) is (run == "second"), output
                keys = dict(
                    line.removeprefix("export ").split("=", 1)
                    for line in (tmp_path / ".suite/demo-keys.env").read_text().splitlines()
                )
                report = f"http://127.0.0.1:{reporting_port}/programmes/demo-cph/referrals-per-partner"
                assert call(report, keys["COORDINATOR_KEY"])["total"]["referrals"] == 4  # loaded once
            finally:
                stop_suite(suite)
    finally:
        server.terminate()
        server.wait()


def test_the_embedded_store_holds_a_blocking_move_until_a_job_arrives() -> None:
    """RQ's workers wait for a job with BLMOVE. fakeredis's answered at once over TCP, so an idle suite's workers
    asked without pause and kept a core busy; the embedded store's waits as Redis does: a move begun on an empty
    queue takes the job pushed after it began, and one that times out leaves both lists as they were."""
    import threading

    import redis

    from shared.embedded import EmbeddedRedis

    server = EmbeddedRedis().start()
    try:
        waiting, pusher = redis.Redis.from_url(server.url), redis.Redis.from_url(server.url)

        def push_later() -> None:
            time.sleep(0.3)  # the move below has begun by then, most likely; if not, it finds the job at once
            pusher.rpush("queue", b"job-1")

        later = threading.Thread(target=push_later)
        later.start()
        assert waiting.blmove("queue", "intermediate", 5) == b"job-1"  # was None at once: the queue was empty
        later.join()
        assert (waiting.lrange("queue", 0, -1), waiting.lrange("intermediate", 0, -1)) == ([], [b"job-1"])
        waiting.rpush("queue", b"job-2", b"job-3")
        assert waiting.blmove("queue", "intermediate", 1, src="RIGHT", dest="LEFT") == b"job-3"
        assert waiting.lrange("intermediate", 0, -1) == [b"job-3", b"job-1"]
        assert waiting.blmove("empty", "intermediate", 1) is None
        assert waiting.lrange("intermediate", 0, -1) == [b"job-3", b"job-1"]
    finally:
        server.stop()


def test_the_embedded_store_stops_while_a_connection_waits_in_a_blocking_move() -> None:
    """Ctrl-C on ``caseflow-suite up`` stopped every child within a second, then took up to 45 s more: stopping
    the store waited for the thread serving each worker's connection, blocked in BLMOVE until RQ's timeout."""
    import threading

    import redis

    from shared.embedded import EmbeddedRedis

    server = EmbeddedRedis().start()
    waiting = redis.Redis.from_url(server.url)
    waiting.ping()  # connected: the move below is sent at once

    def wait_for_a_job() -> None:
        with contextlib.suppress(redis.ConnectionError):
            waiting.blmove("empty", "other", 30)

    threading.Thread(target=wait_for_a_job, daemon=True).start()
    deadline = time.monotonic() + 10
    while not _serving_a_blocking_command() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _serving_a_blocking_command()
    stopping = threading.Thread(target=server.stop, daemon=True)
    stopping.start()
    stopping.join(timeout=15)  # half the move's timeout: without daemon threads, stop returns only after it
    assert not stopping.is_alive()


def _serving_a_blocking_command() -> bool:
    """Whether a thread of this process (the embedded store's) is waiting in fakeredis' blocking loop."""
    return any(
        frame.name == "_blocking"
        for stack in sys._current_frames().values()
        for frame in traceback.extract_stack(stack)
    )


SLOWED = {  # a part of the scheduler's farewell held up long enough for a second signal to land inside it
    "its deregistration": (
        "import time; from rq import cron_scheduler_registry as registry; unregister = registry.unregister\n"
        "def slow(*args, **kwargs):\n    time.sleep(1.0)\n    return unregister(*args, **kwargs)\n"
        "registry.unregister = slow\n",
        "registering death",
    ),
    "a log line being written": (
        "import sys, time; from shared.logs import JsonFormatter; write = JsonFormatter.format\n"
        "def slow(self, record):\n"
        "    if 'stop requested' in record.getMessage():\n"
        "        print('writing the farewell line', flush=True); time.sleep(1.0)\n"
        "    return write(self, record)\n"
        "JsonFormatter.format = slow\n",
        "writing the farewell line",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("slowed", SLOWED)
def test_a_scheduler_signalled_to_stop_twice_stops_without_a_traceback(real_redis_url: str, slowed: str) -> None:
    """A service manager stopping the suite signals its whole process group, and the suite signals its children too,
    so the scheduler gets two SIGTERMs at once. RQ's scheduler raises on each, wherever it is: inside its farewell
    (its deregistration cut short) or inside a log line (printed by logging as a traceback of its own). The
    scheduler must end quietly on the first, not with a traceback in its log and a failed exit."""
    slowing, inside = SLOWED[slowed]
    scheduler = subprocess.Popen(
        [sys.executable, "-c", slowing + "from shared.worker import run_scheduler; run_scheduler()"],
        env={**os.environ, "REDIS_URL": real_redis_url, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert scheduler.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while not any("Enqueued job" in line for line in lines):  # past its start: sleeping between rounds
        assert scheduler.poll() is None and time.monotonic() < deadline, "".join(lines)
        lines.append(scheduler.stdout.readline())
    scheduler.send_signal(signal.SIGTERM)
    while not any(inside in line for line in lines):
        assert time.monotonic() < deadline, "".join(lines)
        lines.append(scheduler.stdout.readline())
    scheduler.send_signal(signal.SIGTERM)
    rest, _ = scheduler.communicate(timeout=30)
    assert scheduler.returncode == 0, rest
    assert "Traceback" not in rest
