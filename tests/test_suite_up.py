"""The README's run command, as a new user runs it: no Redis configured, embedded store, demo loaded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port


def call(url: str, key: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body else None,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_suite_up_runs_everything_on_the_embedded_store_and_stops_cleanly(tmp_path: Path) -> None:
    intake_port, reporting_port, redis_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env |= {
        "INTAKE_PORT": str(intake_port),
        "REPORTING_PORT": str(reporting_port),
        "EMBEDDED_REDIS_PORT": str(redis_port),
        "PYTHONUNBUFFERED": "1",
    }
    suite = subprocess.Popen(
        [sys.executable, "-c", "from shared.suite import main; main()", "up", "--demo-citizens", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        assert suite.stdout is not None
        while not any("Ctrl-C stops everything" in line for line in lines):
            assert time.monotonic() < deadline and suite.poll() is None, "".join(lines)
            lines.append(suite.stdout.readline())
        output = "".join(lines)
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
    finally:
        suite.send_signal(signal.SIGINT)
        rest, _ = suite.communicate(timeout=30)
    assert suite.returncode == 0, rest
    assert "stopping" in rest
    assert "Worker" in (tmp_path / ".suite/logs/caseflow-worker.log").read_text()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{intake_port}/healthz", timeout=2)
