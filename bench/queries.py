"""Query latency against log size: status on a date, intake per month, referrals per partner.

    .venv/bin/python bench/queries.py --citizens 1000 10000 100000

Each size gets a fresh redis-server, a log of referral-stage lifecycles (about two events per citizen),
the reporting read model projected from it, then 200 timed calls per query (median and p99, in ms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.projection import start_redis
from services.reporting.projection import ReportingProjection
from services.reporting.queries import Reports
from shared.bootstrap import event_store
from shared.config import Settings
from shared.projections import ProjectionRunner
from tests.support import generate_log


def timed(call: Callable[[], object], runs: int = 200) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"median_ms": round(statistics.median(samples), 2), "p99_ms": round(samples[int(runs * 0.99) - 1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--citizens", type=int, nargs="+", default=[1000, 10000, 100000])
    args = parser.parse_args()
    results = {}
    for citizens in args.citizens:
        server, url = start_redis()
        try:
            connection = redis.Redis.from_url(url)
            store = event_store(connection, Settings.from_env({}))
            generate_log(store, cases=citizens, seed=2)
            ProjectionRunner(store, ReportingProjection(), batch_size=1000).catch_up_all()
            reports = Reports(connection, "cf")
            results[citizens] = {
                "events": store.head(),
                "status_on_date": timed(lambda reports=reports: reports.status_on("demo-cph", date(2016, 6, 1))),
                "intake_per_month": timed(lambda reports=reports: reports.intake("demo-cph", None, None)),
                "referrals_per_partner": timed(lambda reports=reports: reports.referrals_per_partner("demo-cph")),
            }
            print(citizens, json.dumps(results[citizens]), flush=True)
        finally:
            server.terminate()
            server.wait()
    out = Path(__file__).resolve().parent / "results" / "queries.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
