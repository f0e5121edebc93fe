"""A bounded soak: the whole suite as processes, mixed partner traffic on loopback for a while.

Error rate 0, each service's memory stable (resident size at start and end), queues back to empty after.
CASEFLOW_SOAK_SECONDS sets the length (60 in CI; longer locally)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import free_port

RESULTS = Path(__file__).resolve().parent.parent / ".pytest_cache" / "soak-last-run.json"  # not tracked


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


SERVICES = {  # what each of the suite's children runs (see shared.suite.CHILDREN)
    "intake": "services.intake.app",
    "reporting": "services.reporting.app",
    "caseflow-worker": "services.caseflow.worker import main",
    "reporting-worker": "services.reporting.worker",
    "scheduler": "import scheduler",
}


def children(pid: int) -> dict[str, int]:
    """The suite's child processes, by the service they run."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().split()[3])
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        for name, marker in SERVICES.items():
            if parent == pid and marker in cmdline:
                found[name] = int(entry.name)
    return found


@pytest.mark.slow
def test_a_bounded_soak_of_mixed_traffic(real_redis_url: str, tmp_path: Path) -> None:
    seconds = float(os.environ.get("CASEFLOW_SOAK_SECONDS", "60"))
    connection = redis.Redis.from_url(real_redis_url)
    connection.flushdb()
    intake_port, reporting_port = free_port(), free_port()
    env = {
        **os.environ,
        "REDIS_URL": real_redis_url,
        "INTAKE_PORT": str(intake_port),
        "REPORTING_PORT": str(reporting_port),
        "PYTHONUNBUFFERED": "1",
    }
    suite = subprocess.Popen(
        [sys.executable, "-c", "from shared.suite import main; main()", "up", "--demo-citizens", "0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    intake, reporting = f"http://127.0.0.1:{intake_port}", f"http://127.0.0.1:{reporting_port}"
    errors: list[str] = []
    requests = [0]
    try:
        assert suite.stdout is not None
        deadline = time.monotonic() + 60
        for line in suite.stdout:
            if "Ctrl-C stops everything" in line:
                break
            assert time.monotonic() < deadline, "the suite did not come up"
        keys = dict(
            line.removeprefix("export ").split("=", 1)
            for line in (tmp_path / ".suite/demo-keys.env").read_text().splitlines()
        )
        start = {name: rss_kb(pid) for name, pid in children(suite.pid).items()}
        assert set(start) == set(SERVICES), start

        def call(method: str, path: str, key: str, body: dict[str, Any] | None = None) -> Any:
            request = urllib.request.Request(
                f"{path}",
                data=json.dumps(body).encode() if body is not None else None,
                method=method,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
            )
            requests[0] += 1
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as e:
                errors.append(f"{method} {path.split('/', 3)[-1][:40]} -> {e.code}")
                return None

        def partner(seed: int) -> None:
            rng = random.Random(seed)
            referrer = keys["REDEN_KEY" if seed % 2 else "LIVAREHAB_KEY"]
            staff = keys["COORDINATOR_KEY"]
            stop = time.monotonic() + seconds
            while time.monotonic() < stop and len(errors) < 5:
                case = call(
                    "POST",
                    f"{intake}/referrals",
                    referrer,
                    {
                        "programme_id": "demo-cph",
                        "consent": {"given": True},
                        "citizen": {"alias": f"soak-{rng.randrange(10**6)}"},
                    },
                )
                if not case:
                    continue
                case_id = case["case_id"]
                call("GET", f"{intake}/referrals/{case_id}", referrer)
                call("POST", f"{intake}/referrals/{case_id}/assessment", staff, {})
                if rng.random() < 0.6:
                    call("POST", f"{intake}/cases/{case_id}/enrolment", staff, {"scores": {"housing": 3}})
                    call("POST", f"{intake}/cases/{case_id}/contacts", staff, {"kind": "phone"})
                    call("POST", f"{intake}/cases/{case_id}/who5", staff, {"items": [1, 2, 3, 2, 1]})
                    call("GET", f"{intake}/cases/{case_id}", staff)
                else:
                    call("POST", f"{intake}/referrals/{case_id}/decline", staff, {"reason": "not now"})
                call("GET", f"{reporting}/programmes/demo-cph/statistics/status", staff)

        clients = [threading.Thread(target=partner, args=(i,)) for i in range(4)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(timeout=seconds + 120)
        drained_by = time.monotonic() + 60
        while connection.llen("rq:queue:caseflow") + connection.llen("rq:queue:reporting") > 0:
            assert time.monotonic() < drained_by, "the queues did not drain after the load"
            time.sleep(0.5)
        end = {name: rss_kb(pid) for name, pid in children(suite.pid).items()}
    finally:
        suite.send_signal(signal.SIGINT)
        suite.wait(timeout=60)
        connection.flushdb()

    result = {
        "seconds": seconds,
        "requests": requests[0],
        "errors": len(errors),
        "rss_kb_start": start,
        "rss_kb_end": end,
        "ran_on": time.strftime("%Y-%m-%d"),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    assert errors == [], errors[:5]
    assert requests[0] > 100
    for name, before in start.items():
        assert end.get(name, 0) < before * 1.5 + 30_000, f"{name}: {before} kB -> {end.get(name)} kB"
