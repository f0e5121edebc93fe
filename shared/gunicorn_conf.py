"""gunicorn's settings for intake and reporting (``gunicorn -c python:shared.gunicorn_conf ...``, as compose runs
them): a scrape of ``/metrics`` is answered by one worker process, and must count what every worker served.

prometheus_client keeps each process's counters in files in ``PROMETHEUS_MULTIPROC_DIR`` and adds them up at a
scrape. It decides whether to at import, so the directory is named here, before any worker imports it: the
operator's, emptied of an earlier run's files, or a fresh one of this server's own, removed when it stops. One
directory per server: two servers given the same one would empty each other's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

_OWN = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
if _OWN:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="caseflow-metrics-")
METRICS_DIR = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def on_starting(server: Any) -> None:
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for stale in METRICS_DIR.glob("*.db"):  # an earlier run's counts are not this run's
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]  # its counters stay counted


def on_exit(server: Any) -> None:
    if _OWN:
        shutil.rmtree(METRICS_DIR, ignore_errors=True)
