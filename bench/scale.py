"""Cost against size: rebuilding every read model (measure 3) and query latency (measure 4).

    .venv/bin/python bench/scale.py --citizens 100000

One redis-server is started for the run and one workload log is generated (``bench/workload.py``: whole
courses, about twelve events per citizen). Smaller sizes are prefixes of it: the log as it stood when it
held N events, or when its N-th citizen was referred.

- Rebuild: for each size, a fresh process (so its peak memory is its own) runs ``rebuild`` up to that size
  with ``--processes`` forked processes (default: one per core), exactly what ``projections rebuild all``
  does. Reports seconds, events/s, peak RSS of the largest process, and Redis memory per event (log, and
  read models). Its baseline, in the same run: the same prefix of the log read raw (``bench/projection.py``'s
  XRANGE of every partition, nothing decoded; the best of three); and its peer: both read models written the
  obvious way, one RQ job per event and read model (``bench/naive_peer.py``), timed on the log's first events.
- Queries: the reporting read model is projected up to each citizen count, then each query is called 200
  times through ``Reports`` (what the API calls, without HTTP): median and p99. Its baseline, at each size:
  one Redis round trip through the same client (a GET of the log's head), the least any report can cost.

Writes bench/results/scale.json and, with matplotlib installed (``pip install -e '.[bench]'``), the plots
docs/img/rebuild.png and docs/img/queries.png.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "scale.json"
sys.path.insert(0, str(ROOT))

from bench.projection import best, naive_peer, raw_read  # noqa: E402
from bench.workload import drop, machine, workload_log  # noqa: E402
from services.caseflow.projection import CaseflowProjection  # noqa: E402
from services.reporting.projection import ReportingProjection  # noqa: E402
from services.reporting.queries import Reports  # noqa: E402
from shared.bootstrap import event_store  # noqa: E402
from shared.config import Settings  # noqa: E402
from shared.eventstore import EventStore  # noqa: E402
from shared.gc_tuning import make_full_collections_rare  # noqa: E402
from shared.projections import rebuild, replay  # noqa: E402

PROGRAMME = "bench-cph"
ON = date(2017, 6, 1)  # a day within every size's span but the smallest's


def rebuild_both(url: str, until: int, processes: int) -> dict[str, float]:
    """In a fresh process: what ``projections rebuild all --processes N`` does, up to ``until`` (both read
    models in one pass, the partitions shared among N forked processes); seconds and peak RSS (the largest
    process: the parent, or one rebuild process)."""
    make_full_collections_rare()  # as the rebuild command does
    store = event_store(redis.Redis.from_url(url), Settings.from_env({}))
    started = time.perf_counter()
    rebuild(
        store, [CaseflowProjection(), ReportingProjection()], f"bench-rebuild:{until}", processes=processes, until=until
    )
    own, children = (
        resource.getrusage(who).ru_maxrss / 1024 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": max(own, children)}


def timed(call: Callable[[], object], runs: int = 200) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"median_ms": round(statistics.median(samples), 3), "p99_ms": round(samples[int(runs * 0.99) - 1], 3)}


def measure_rebuilds(store: EventStore, url: str, sizes: list[int], processes: int) -> list[dict[str, Any]]:
    connection, rows = store.redis, []
    for size in sizes:
        raw = best(3, partial(raw_read, store, until=size))
        before = connection.info("memory")["used_memory"]
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            result = pool.submit(rebuild_both, url, size, processes).result()
        models = connection.info("memory")["used_memory"] - before
        row = {
            "events": size,
            "processes": processes,
            "both_s": round(result["seconds"], 2),
            "events_per_s_both_models": round(size / result["seconds"]),
            "peak_rss_mb": round(result["peak_rss_mb"], 1),
            "read_models_bytes_per_event": round(models / size),
            "raw_read_s": round(raw, 2),
            "raw_read_events_per_s": round(size / raw),
            "vs_raw_read": round(raw / result["seconds"], 3),
        }
        print("rebuild", json.dumps(row), flush=True)
        rows.append(row)
        drop(connection, f"bench-rebuild:{size}:*")
    return rows


def measure_queries(store: EventStore, heads: dict[int, int], sizes: list[int]) -> list[dict[str, Any]]:
    connection = store.redis
    namespace, position, rows = "bench-queries", 0, []
    reports = Reports(connection, "cf", store)  # with the store, as the service: status reads confirmed matches
    reports.ns = namespace  # read the model this benchmark builds, not the (empty) live one
    for citizens in sizes:
        until = heads[citizens]
        replay(store, ReportingProjection(), namespace, after=position, until=until)
        position = until
        row: dict[str, Any] = {
            "citizens": citizens,
            "events": until,
            "one_round_trip": timed(lambda: connection.get(store.keys.position)),
            "status_on_date": timed(lambda: reports.status_on(PROGRAMME, ON)),
            "success_criteria": timed(lambda: reports.success_criteria(PROGRAMME, ON)),
            "intake_per_month": timed(lambda: reports.intake(PROGRAMME, None, None)),
            "referrals_per_partner": timed(lambda: reports.referrals_per_partner(PROGRAMME)),
        }
        print("queries", json.dumps(row), flush=True)
        rows.append(row)
    drop(connection, f"{namespace}:*")
    return rows


def plot(results: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plots")
        return
    out = ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    rebuilds = results["rebuild"]
    events = [r["events"] for r in rebuilds]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(
        events, [r["both_s"] for r in rebuilds], "o-", label=f"both read models, {rebuilds[0]['processes']} processes"
    )
    left.plot(events, [r["raw_read_s"] for r in rebuilds], "^--", color="grey", label="baseline: the log read raw")
    left.axhline(60, color="grey", linestyle=":", label="target: 60 s at 1M")
    left.set(xlabel="events in the log", ylabel="seconds", title="Rebuild time")
    left.legend()
    right.plot(events, [r["peak_rss_mb"] for r in rebuilds], "o-", label="peak RSS of the rebuild (MB)")
    right.plot(events, [r["read_models_bytes_per_event"] for r in rebuilds], "s-", label="read models, bytes/event")
    right.set(xlabel="events in the log", title="Memory")
    right.legend()
    fig.tight_layout()
    fig.savefig(out / "rebuild.png", dpi=100)
    queries = results["queries"]
    citizens = [q["citizens"] for q in queries]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("status_on_date", "success_criteria", "intake_per_month", "referrals_per_partner"):
        ax.plot(citizens, [q[name]["median_ms"] for q in queries], "o-", label=f"{name} (median)")
        ax.plot(citizens, [q[name]["p99_ms"] for q in queries], ":", color=ax.lines[-1].get_color())
    ax.plot(
        citizens,
        [q["one_round_trip"]["median_ms"] for q in queries],
        "^--",
        color="grey",
        label="baseline: one round trip",
    )
    ax.set(xscale="log", xlabel="citizens (log scale)", ylabel="ms (dotted: p99)", title="Query latency")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "queries.png", dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--citizens", type=int, default=100_000, help="the whole log's citizens")
    parser.add_argument("--rebuild-events", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--query-citizens", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--processes", type=int, default=multiprocessing.cpu_count(), help="rebuild processes")
    parser.add_argument("--peer-events", type=int, default=1_000, help="events the naive peer projects, per model")
    parser.add_argument("--plot-only", action="store_true", help="redraw the plots from the last results, no run")
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads(RESULTS.read_text()))
        return
    with workload_log(args.citizens) as (url, store, heads, generate_s):
        connection, head = store.redis, store.head()
        results: dict[str, Any] = {
            "machine": machine(),
            "citizens": args.citizens,
            "events": head,
            "generate_s": generate_s,
            "log_bytes_per_event": round(connection.info("memory")["used_memory"] / head),
        }
        print(json.dumps(results), flush=True)
        results["rebuild"] = measure_rebuilds(store, url, [n for n in args.rebuild_events if n <= head], args.processes)
        # The peer rebuilds both read models, each by one job per event: its seconds per event are the two added.
        peer_s = sum(naive_peer(connection, url, name, args.peer_events) for name in ("caseflow", "reporting"))
        peer = results["naive_peer_both_models_events_per_s"] = round(args.peer_events / peer_s)
        for row in results["rebuild"]:
            row["vs_naive_peer"] = round(row["events_per_s_both_models"] / peer)
        results["queries"] = measure_queries(store, heads, [c for c in args.query_citizens if c in heads])
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    plot(results)


if __name__ == "__main__":
    main()
