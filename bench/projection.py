"""Projection throughput against the raw log, on a real redis-server started for the run (measure 2).

    .venv/bin/python bench/projection.py --citizens 2000 --repeat 3

On one workload log (``bench/workload.py``: whole courses), in one run: reading the log raw (XRANGE in
batches of 1,000, no decoding), reading and decoding it, reading, decoding and folding it in memory with
caseflow's rules and writing nothing (the floor of a caseflow worker), one worker process projecting each read model
from scratch, two worker processes projecting it together, a replay of both (what a rebuild does), and
the naive peer (``bench/naive_peer.py``: one RQ job per event, run by an in-process SimpleWorker). The
figures run in ``--repeat`` rounds, each a raw read, then what is compared with it: a ratio is the median of
the rounds' own ratios (this shared machine's speed drifts by a third between runs minutes apart, far less
within a round), and each events/s the best of its runs, as ``timeit`` keeps. Each round also reads the log
raw past redis-py's parsing of entries (``raw_read_unparsed``), a stricter baseline reported beside the
issue's; and with each worker run, the CPU time an event its processes and Redis took. Prints a table and writes
bench/results/projection-<citizens>.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import redis
from rq import Queue, SimpleWorker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.naive_peer import project_event
from bench.workload import drop, machine, workload_log
from services.caseflow.projection import CaseflowProjection, kind_of
from services.reporting.projection import ReportingProjection
from shared.bootstrap import event_store
from shared.config import Settings
from shared.eventstore import EventStore
from shared.gc_tuning import frozen_between_batches, make_full_collections_rare, no_collections
from shared.projections import Projection, ProjectionRunner, replay
from shared.redis_values import entry_position

PROJECTIONS: dict[str, Projection] = {"caseflow": CaseflowProjection(), "reporting": ReportingProjection()}


def _worker(url: str, name: str, partitions: list[int], batch_size: int | None) -> None:
    store = event_store(redis.Redis.from_url(url), Settings.from_env({}))
    runner = ProjectionRunner(store, PROJECTIONS[name], batch_size=batch_size)
    for p in partitions:
        runner.catch_up(p)


@dataclass(frozen=True)
class Projected:
    """One run of ``project``: its seconds, and the CPU time its worker processes and Redis took meanwhile."""

    seconds: float
    workers_cpu_s: float
    redis_cpu_s: float


def redis_cpu_s(connection: redis.Redis) -> float:
    """The server's CPU time so far, user and system, all its threads (``INFO cpu``)."""
    cpu = connection.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def project(url: str, name: str, workers: int, batch_size: int | None) -> Projected:
    """``workers`` processes bringing a fresh read model up to the log. The last run's read model is deleted
    before the clocks start: deleting it is not this run's work (it took Redis more than twice the time the run did)."""
    connection = redis.Redis.from_url(url)
    drop(connection, f"cf:proj:{name}:*")
    partitions = list(range(16))
    processes = [
        multiprocessing.Process(target=_worker, args=(url, name, partitions[i::workers], batch_size))
        for i in range(workers)
    ]
    redis_before, children_before = redis_cpu_s(connection), os.times()
    started = time.perf_counter()
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    seconds = time.perf_counter() - started
    children = os.times()  # the workers' time, counted once each has been joined
    workers_cpu = children.children_user + children.children_system
    workers_cpu -= children_before.children_user + children_before.children_system
    return Projected(seconds, workers_cpu, redis_cpu_s(connection) - redis_before)


def cpu_per_event(runs: list[Projected], events: int) -> dict[str, float]:
    """Microseconds of CPU an event (medians over runs): the workers' processes, and Redis serving them."""
    return {
        "workers": round(statistics.median(r.workers_cpu_s for r in runs) / events * 1e6, 2),
        "redis": round(statistics.median(r.redis_cpu_s for r in runs) / events * 1e6, 2),
    }


def best(runs: int, measure: Callable[[], float]) -> float:
    """The shortest of several timings of the same thing."""
    return min(measure() for _ in range(runs))


def median_ratio(rounds: list[tuple[float, float]], digits: int = 3) -> float:
    """The median over rounds of (baseline seconds / measured seconds): each figure against its own round's."""
    return round(statistics.median(base / measured for base, measured in rounds), digits)


def raw_read(store: EventStore, until: int | None = None) -> float:
    """The baseline: every partition's stream (the log, see ``shared.eventstore``) read by XRANGE in batches of
    1,000, nothing decoded: what a worker reads, at the speed of redis-py and hiredis. ``until``: the log as it
    stood at that position (a rebuild's prefix, ``bench/scale.py``)."""
    end = "+" if until is None else f"{until}-0"
    started = time.perf_counter()
    for partition in range(store.partitions):
        position = 0
        while entries := store.redis.xrange(store.keys.partition(partition), f"{position + 1}-0", end, count=1000):
            position = int(cast(bytes, entries[-1][0]).split(b"-")[0])
    return time.perf_counter() - started


def raw_read_unparsed(store: EventStore) -> float:
    """The raw read as the workers make it (``EventStore.read_partition_stored``), past redis-py's turning each
    entry's fields into a dict: the least a reader of this log through redis-py pays. A second, stricter
    baseline: the issue's is the raw XRANGE above."""
    started = time.perf_counter()
    for partition in range(store.partitions):
        position = 0
        while entries := store.read_partition_stored(partition, position, 1000):
            position = entry_position(entries[-1][0])
    return time.perf_counter() - started


def read_and_decode(store: EventStore) -> float:
    """Every partition read and decoded, as a worker reads it (batches of 1,000), with no projection."""
    started = time.perf_counter()
    for partition in range(store.partitions):
        position = 0
        while batch := store.read_partition(partition, position, 1000):
            position = batch[-1].global_position
    return time.perf_counter() - started


def read_decode_fold(store: EventStore, batch_size: int) -> float:
    """Every partition read, decoded and folded by caseflow's own rules (``evolve``) into objects held in a dict,
    nothing written and nothing checked: the least a worker that folds the domain's events in Python does. Its
    ratio to the raw read bounds what any such caseflow worker can reach on this machine."""
    started = time.perf_counter()
    for partition in range(store.partitions):
        held: dict[str, Any] = {}
        position = 0
        with frozen_between_batches() as freeze:
            while position := _fold_batch(store, partition, position, batch_size, held, freeze):
                pass
    return time.perf_counter() - started


def _fold_batch(
    store: EventStore, partition: int, after: int, batch_size: int, held: dict[str, Any], freeze: bool
) -> int:
    """One batch read, decoded and folded into ``held``, with no collection meanwhile and what it left frozen, as
    a worker's; where it ended (0: nothing was left)."""
    with no_collections(freeze):
        batch = store.read_partition(partition, after, batch_size)
        for event in batch:
            if (found := kind_of(event.stream_id)) is not None:
                kind, key = found
                before = held.get(key)
                start = before if before is not None else kind.initial(key)
                held[key] = kind.evolve(start, key, event.payload, event.occurred_on)
        end = batch[-1].global_position if batch else 0
        del batch
    return end


def replay_both(store: EventStore) -> float:
    started = time.perf_counter()
    for name, projection in PROJECTIONS.items():
        replay(store, projection, f"bench-replay:{name}")
    elapsed = time.perf_counter() - started
    drop(store.redis, "bench-replay:*")
    return elapsed


def naive_peer(connection: redis.Redis, url: str, name: str, events: int) -> float:
    """Seconds for one SimpleWorker to run one job per event for the first ``events`` events."""
    queue = Queue(f"bench-peer-{name}", connection=connection)
    for position in range(1, events + 1):
        queue.enqueue(project_event, url, name, position, f"bench-peer:{name}")
    started = time.perf_counter()
    SimpleWorker([queue], connection=connection).work(burst=True, logging_level="WARNING")
    elapsed = time.perf_counter() - started
    drop(connection, f"bench-peer:{name}:*")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--citizens", type=int, default=2_000, help="about twelve events per citizen")
    parser.add_argument("--repeat", type=int, default=3, help="rounds: ratios are their median, events/s the best")
    parser.add_argument("--peer-events", type=int, default=2_000, help="events the naive peer projects")
    parser.add_argument("--batch-size", type=int, help="events per committed batch (default: each projection's own)")
    parser.add_argument("--skip-peer", action="store_true", help="leave out the naive peer (it takes a while)")
    args = parser.parse_args()
    make_full_collections_rare()  # as the workers' and the rebuild's entry points do; the forked workers inherit it
    with workload_log(args.citizens) as (url, store, _, generate_s):
        connection = store.redis
        events = store.head()
        results: dict[str, Any] = {
            "machine": machine(),
            "citizens": args.citizens,
            "batch_size": args.batch_size or {name: p.batch_size for name, p in PROJECTIONS.items()},
            "events": events,
            "generate_s": generate_s,
            "redis_bytes_per_event_log": round(connection.info("memory")["used_memory"] / events),
        }
        raw_reads: list[float] = []  # every raw read of the run, in seconds
        unparsed_reads: list[float] = []  # and every raw read past redis-py's parsing

        def raw_read_timed() -> float:
            raw_reads.append(raw_read(store))
            return raw_reads[-1]

        decode = best(args.repeat, lambda: read_and_decode(store))
        fold_batch = args.batch_size or CaseflowProjection.batch_size
        rounds = [(raw_read_timed(), read_decode_fold(store, fold_batch)) for _ in range(args.repeat)]
        results["read_and_decode_events_per_s"] = round(events / decode)
        results["read_decode_fold_events_per_s"] = round(events / min(fold for _, fold in rounds))
        results["read_decode_fold_vs_raw"] = median_ratio(rounds)
        peer_events = min(args.peer_events, events)
        for name in PROJECTIONS:
            # Rounds of a raw read, one worker and two: on this shared machine the raw read itself moves by a
            # third between runs minutes apart, so each worker is compared with the raw read of its own round.
            timed = [
                (
                    raw_read_timed(),
                    project(url, name, 1, args.batch_size),
                    project(url, name, 2, args.batch_size),
                    raw_read_unparsed(store),
                )
                for _ in range(args.repeat)
            ]
            one, two = min(t[1].seconds for t in timed), min(t[2].seconds for t in timed)
            results[f"{name}_one_worker_events_per_s"] = round(events / one)
            results[f"{name}_two_workers_events_per_s"] = round(events / two)
            results[f"{name}_two_over_one"] = median_ratio([(t[1].seconds, t[2].seconds) for t in timed], digits=2)
            results[f"{name}_two_over_one_rounds"] = [round(t[1].seconds / t[2].seconds, 2) for t in timed]
            results[f"{name}_one_worker_vs_raw"] = median_ratio([(t[0], t[1].seconds) for t in timed])
            results[f"{name}_one_worker_vs_raw_rounds"] = [round(t[0] / t[1].seconds, 3) for t in timed]
            results[f"{name}_one_worker_vs_raw_unparsed"] = median_ratio([(t[3], t[1].seconds) for t in timed])
            # Where two workers' time goes: how much more CPU an event each takes beside the other, and Redis's
            results[f"{name}_cpu_us_per_event_one_worker"] = cpu_per_event([t[1] for t in timed], events)
            results[f"{name}_cpu_us_per_event_two_workers"] = cpu_per_event([t[2] for t in timed], events)
            unparsed_reads.extend(t[3] for t in timed)
            if args.skip_peer:
                continue
            peer = best(args.repeat, partial(naive_peer, connection, url, name, peer_events))
            results[f"{name}_naive_peer_events_per_s"] = round(peer_events / peer)
            results[f"{name}_one_worker_vs_naive_peer"] = round((events / one) / (peer_events / peer), 1)
        results["raw_xrange_events_per_s"] = round(events / min(raw_reads))
        results["raw_xrange_unparsed_events_per_s"] = round(events / min(unparsed_reads))
        both = best(args.repeat, lambda: replay_both(store))
        results["replay_both_s"] = round(both, 2)
        results["replay_events_per_s"] = round(2 * events / both)
        results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out = Path(__file__).resolve().parent / "results" / f"projection-{args.citizens}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
