"""Referrals accepted per second over HTTP, against a bare Flask endpoint with one Redis round trip, both under
gunicorn with the deployment's settings (``shared/gunicorn_conf.py``, as compose runs intake), loaded by wrk
on loopback (measure 1); then, under the same load with one caseflow and one reporting worker running, how
long an accepted referral takes to be visible in reporting (measure 5).

    .venv/bin/python bench/intake.py --seconds 10 --connections 16 --rounds 3

Measure 1 runs in rounds, each the baseline, then a referral without its HTTP interface
(``bench/referral_app.py``: the service's own ``Intake.refer``, no authentication, validation or answer),
then intake, and keeps the round with the median ratio: on a shared machine, throughput drifts by a quarter
between runs minutes apart, a ratio within a round far less.

"Visible in reporting": the reporting read model that the reporting service reads holds the referral's
course document, i.e. the reporting worker has committed it. A probe posts a referral every 20 ms on its
own connection, takes the time its 201 arrives, and polls Redis every half millisecond until then. The
workers start after the rounds, so measure 5 begins once they have projected the rounds' referrals (the
time they took is reported as ``workers_caught_up``). Its baseline, under the same load: one RQ job that does
nothing, from its enqueueing to its being finished by a third worker (a SimpleWorker of its own), polled the same
way: one hop through the queue, the least any work done after an answer, in a worker, takes on this stack. The
probe alternates the two.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis
from rq import Queue
from rq.job import JobStatus

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import machine
from services.caseflow.projection import CaseflowProjection
from services.reporting.projection import ReportingProjection, course_doc
from shared.bootstrap import event_store
from shared.config import DEVELOPMENT_SECRETS, Settings
from shared.eventstore import EventStore
from shared.projections import active_namespace, lag
from tests.conftest import COPENHAGEN, free_port, referral_body, start_redis_server
from tests.support import _key_parts, grant_test_keys

ROOT = Path(__file__).resolve().parent.parent


def _without(environment: Mapping[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in environment.items() if k != name}


def serve(target: str, url: str, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    process = subprocess.Popen(
        [
            gunicorn,
            "-c",
            "python:shared.gunicorn_conf",
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            target,
        ],
        # each server names its own metrics directory (shared/gunicorn_conf.py): a shared one would be emptied
        env={**_without(os.environ, "PROMETHEUS_MULTIPROC_DIR"), **DEVELOPMENT_SECRETS, "REDIS_URL": url},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{target} did not start")


def wrk(port: int, headers: dict[str, str], body: str, seconds: int, connections: int) -> dict[str, float]:
    script = Path(tempfile.mkdtemp()) / "post.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/referrals",
        ],
        capture_output=True,
        text=True,
    ).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(\w+)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
    }


HOP_QUEUE = "bench-hop"


def start_workers(url: str) -> list[subprocess.Popen[bytes]]:
    """One caseflow and one reporting worker, as ``caseflow-suite up`` runs them (real RQ workers), and the
    baseline's SimpleWorker on a queue of its own."""
    bin_dir = Path(sys.executable).parent
    commands = [[str(bin_dir / "caseflow-worker")], [str(bin_dir / "caseflow-reporting-worker")]]
    commands.append([str(bin_dir / "rq"), "worker", "--url", url, "--worker-class", "rq.SimpleWorker", HOP_QUEUE])
    return [
        subprocess.Popen(
            command,
            env={**os.environ, **DEVELOPMENT_SECRETS, "REDIS_URL": url},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for command in commands
    ]


def one_hop(queue: Queue) -> float:
    """ms from enqueueing a job that does nothing to its being finished by a worker, polled every half ms."""
    job = queue.enqueue("os.getpid")
    enqueued = time.perf_counter()
    while job.get_status(refresh=True) != JobStatus.FINISHED:
        if time.perf_counter() - enqueued > 30:
            raise RuntimeError("the baseline's job not finished after 30 s")
        time.sleep(0.0005)
    return (time.perf_counter() - enqueued) * 1000


def summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "median_ms": round(statistics.median(samples), 1),
        "p99_ms": round(samples[max(0, int(len(samples) * 0.99) - 1)], 1),
        "max_ms": round(samples[-1], 1),
    }


def wait_until_caught_up(store: EventStore, limit_s: float = 900) -> float:
    """Seconds until both workers have projected the whole log: they start after the rounds, with every
    referral of the rounds still to project, and measure 5 is about a referral made once they keep up."""
    namespaces = [active_namespace(store.redis, "cf", p) for p in (CaseflowProjection(), ReportingProjection())]
    started = time.perf_counter()
    while any(lag(store, namespace) for namespace in namespaces):
        if time.perf_counter() - started > limit_s:
            raise RuntimeError(f"the workers did not catch up with the log in {limit_s} s")
        time.sleep(0.2)
    return time.perf_counter() - started


def end_to_end(
    connection: redis.Redis, port: int, headers: dict[str, str], body: str, seconds: float
) -> dict[str, Any]:
    """Post a referral every 20 ms for ``seconds``; for each, ms from its 201 to its course in reporting. Between
    referrals, the baseline's job through a queue of its own (``one_hop``)."""
    namespace = active_namespace(connection, "cf", ReportingProjection())
    client = http.client.HTTPConnection("127.0.0.1", port)
    hop_queue = Queue(HOP_QUEUE, connection=connection)
    samples: list[float] = []
    hops: list[float] = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        hops.append(one_hop(hop_queue))
        client.request("POST", "/referrals", body=body, headers=headers)
        response = client.getresponse()
        accepted = time.perf_counter()
        answer = json.loads(response.read())
        assert response.status == 201, answer
        key = f"{namespace}:{course_doc(answer['case_id'])}"
        while not connection.exists(key):
            if time.perf_counter() - accepted > 30:
                raise RuntimeError(f"{answer['case_id']} not in reporting after 30 s")
            time.sleep(0.0005)
        samples.append((time.perf_counter() - accepted) * 1000)
        time.sleep(max(0.0, 0.02 - (time.perf_counter() - accepted)))
    ours, baseline = summary(samples), summary(hops)
    return {
        "referrals": len(samples),
        **ours,
        "baseline_one_rq_job": {"jobs": len(hops), **baseline},
        "baseline_over_ours_median": round(baseline["median_ms"] / ours["median_ms"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--gunicorn-workers", type=int, default=2, help="per server; docker-compose.yml runs 2")
    parser.add_argument("--rounds", type=int, default=3, help="baseline-then-intake rounds; the median is kept")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/intake.py needs wrk (Debian: apt-get install wrk)")
    server, url = start_redis_server(Path(tempfile.mkdtemp()))
    processes = []
    try:
        connection = redis.Redis.from_url(url)
        settings = Settings.from_env({**DEVELOPMENT_SECRETS, "REDIS_URL": url})
        grant_test_keys(event_store(connection, settings))
        from services.intake.app import create_app

        partner, key_id, secret = _key_parts("coordinator")
        auth = {"Authorization": f"Bearer cfk.{partner}.{key_id}.{secret}", "Content-Type": "application/json"}
        assert (
            create_app(connection, settings)
            .test_client()
            .post("/programmes", json=COPENHAGEN, headers=auth)
            .status_code
            == 201
        )
        body = json.dumps(referral_body())
        baseline, baseline_port = serve("bench.baseline_app:app", url, args.gunicorn_workers)
        without_http, without_http_port = serve("bench.referral_app:app", url, args.gunicorn_workers)
        intake, intake_port = serve("services.intake.app:wsgi()", url, args.gunicorn_workers)
        processes = [baseline, without_http, intake]
        for port in (baseline_port, without_http_port, intake_port):
            wrk(port, auth, body, 2, args.connections)  # warm up
        rounds: list[dict[str, Any]] = []
        for _ in range(args.rounds):  # interleaved: a shared machine's slow spell hits every side of a round
            baseline_run = wrk(baseline_port, auth, body, args.seconds, args.connections)
            without_http_run = wrk(without_http_port, auth, body, args.seconds, args.connections)
            intake_run = wrk(intake_port, auth, body, args.seconds, args.connections)
            rounds.append(
                {
                    "baseline": baseline_run,
                    "referral_without_http": without_http_run,
                    "intake": intake_run,
                    "ratio": round(intake_run["requests_per_s"] / baseline_run["requests_per_s"], 3),
                    "without_http_ratio": round(without_http_run["requests_per_s"] / baseline_run["requests_per_s"], 3),
                }
            )
        sides = ("baseline", "referral_without_http", "intake")
        failed = [f"{side}: {r[side]['non_2xx']}" for r in rounds for side in sides if r[side]["non_2xx"]]
        if failed:
            raise RuntimeError(f"answers other than 2xx, so the figures do not count: {failed}")
        median = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
        results: dict[str, Any] = {
            "machine": machine(),
            **median,
            "ratios_of_rounds": [r["ratio"] for r in rounds],
            "without_http_ratios_of_rounds": [r["without_http_ratio"] for r in rounds],
        }
        processes += start_workers(url)
        store = event_store(connection, settings)
        results["workers_caught_up"] = {"events": store.head(), "seconds": round(wait_until_caught_up(store), 1)}
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            load = pool.submit(wrk, intake_port, auth, body, args.seconds + 2, args.connections)
            time.sleep(1)  # let the load build up first
            results["end_to_end"] = end_to_end(connection, intake_port, auth, body, args.seconds)
            results["intake_under_end_to_end"] = load.result()
        results["referrals_in_log"] = store.head()
    finally:
        for p in processes:
            p.terminate()
            p.wait()
        server.terminate()
        server.wait()
    (ROOT / "bench" / "results" / "intake.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
