"""Projection throughput against the raw log, on a real redis-server started for the run.

    .venv/bin/python bench/projection.py --events 20000

Measures, in one run on one machine: reading the log raw (XRANGE in batches of 1,000, no decoding), reading
and decoding it (every event upcast and validated), one worker projecting each read model, two worker
processes projecting it together, and a replay (what a rebuild does) with its peak memory and Redis memory
per event. Prints a table and writes bench/results/projection-<events>.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.caseflow.projection import CaseflowProjection
from services.reporting.projection import ReportingProjection
from shared.bootstrap import event_store
from shared.config import Settings
from shared.projections import Projection, ProjectionRunner, replay
from tests.support import generate_log

PROJECTIONS: dict[str, Projection] = {"caseflow": CaseflowProjection(), "reporting": ReportingProjection()}


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = shutil.which("redis-server") or "redis-server"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", tempfile.mkdtemp()],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            return process, url
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def _worker(url: str, name: str, partitions: list[int]) -> None:
    store = event_store(redis.Redis.from_url(url), Settings.from_env({}))
    runner = ProjectionRunner(store, PROJECTIONS[name], batch_size=500)
    for p in partitions:
        runner.catch_up(p)


def project(url: str, name: str, workers: int) -> float:
    """Seconds for ``workers`` processes to bring a fresh read model up to the log."""
    connection = redis.Redis.from_url(url)
    for key in connection.scan_iter(f"cf:proj:{name}:*", count=1000):
        connection.delete(key)
    partitions = list(range(16))
    started = time.perf_counter()
    processes = [
        multiprocessing.Process(target=_worker, args=(url, name, partitions[i::workers])) for i in range(workers)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000, help="roughly: about two events per case")
    args = parser.parse_args()
    server, url = start_redis()
    try:
        connection = redis.Redis.from_url(url)
        store = event_store(connection, Settings.from_env({}))
        started = time.perf_counter()
        cases = args.events // 2
        generate_log(store, cases=cases, seed=1)
        events = store.head()
        results: dict[str, float | int | str] = {
            "events": events,
            "generate_s": round(time.perf_counter() - started, 1),
        }

        started = time.perf_counter()
        position = 0
        while entries := connection.xrange(store.keys.events, f"{position + 1}-0", "+", count=1000):
            position = int(entries[-1][0].split(b"-")[0])
        results["raw_xrange_events_per_s"] = round(events / (time.perf_counter() - started))

        started = time.perf_counter()
        position = 0
        while batch := store.read_all(after=position, limit=1000):
            position = batch[-1].global_position
        results["read_and_decode_events_per_s"] = round(events / (time.perf_counter() - started))

        for name in PROJECTIONS:
            one = project(url, name, 1)
            two = project(url, name, 2)
            results[f"{name}_one_worker_events_per_s"] = round(events / one)
            results[f"{name}_two_workers_events_per_s"] = round(events / two)
            results[f"{name}_two_over_one"] = round(one / two, 2)
            results[f"{name}_one_worker_vs_raw"] = round(events / one / results["raw_xrange_events_per_s"], 3)

        before = connection.info("memory")["used_memory"]
        started = time.perf_counter()
        for name, projection in PROJECTIONS.items():
            replay(store, projection, f"bench-replay:{name}")
        results["replay_both_s"] = round(time.perf_counter() - started, 2)
        results["replay_events_per_s"] = round(2 * events / (time.perf_counter() - started))
        results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        results["redis_bytes_per_event_log"] = round(before / events)
        results["machine"] = f"{multiprocessing.cpu_count()} cores, {sys.version.split()[0]}"
    finally:
        server.terminate()
        server.wait()
    out = Path(__file__).resolve().parent / "results" / f"projection-{args.events}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
