"""Prometheus metrics at ``/metrics`` on both HTTP services.

Per process: requests by endpoint and status, latency histograms, events
appended by type. Read from Redis at scrape time, so every process and host
agrees: jobs queued and failed per queue, each read model's lag behind the log,
and the log's length. Under gunicorn with several workers (``shared.gunicorn_conf``), the per-process ones
are added up over every worker at each scrape.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.http import error_response, sends_operator_token, this_g, this_request

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("caseflow_http_requests", "HTTP requests", ["service", "endpoint", "status"], registry=REGISTRY)
LATENCY = Histogram(
    "caseflow_http_request_seconds",
    "HTTP request latency",
    ["service", "endpoint"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
EVENTS = Counter("caseflow_events_appended", "Events appended to the log", ["type"], registry=REGISTRY)


class RedisCollector(Collector):
    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from shared.health import readiness

        _, report = readiness(self.connection)
        jobs = GaugeMetricFamily("caseflow_queue_jobs", "Jobs per queue and state", labels=["queue", "state"])
        for queue, counts in report["queues"].items():
            for state, value in counts.items():
                jobs.add_metric([queue, state], value)
        yield jobs
        lag = GaugeMetricFamily(
            "caseflow_projection_lag", "Log positions a read model is behind", labels=["projection"]
        )
        damaged = GaugeMetricFamily(
            "caseflow_projection_damaged_partitions",
            "Partitions whose batch a commit applied only in part: the read model is wrong until rebuilt",
            labels=["projection"],
        )
        for projection, value in report["projection_lag"].items():
            lag.add_metric([projection], value)
            damaged.add_metric([projection], len(report.get("damaged", {}).get(projection, {})))
        yield lag
        yield damaged
        yield GaugeMetricFamily("caseflow_log_head", "Events in the log", value=report["log_head"])


def install_metrics(app: Flask, service: str, connection: Any, token: str = "") -> None:
    """``token``, when set, is asked of every scrape (``shared.http.sends_operator_token``)."""
    registry = CollectorRegistry()
    registry.register(RedisCollector(connection))
    # A request's counter and histogram by (endpoint, status): looking a child up by its labels takes a lock and
    # checks every label, for the few routes and statuses a service has.
    children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    @app.before_request
    def _start() -> None:
        this_g().metrics_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        endpoint, status = this_request().endpoint or "unmatched", response.status_code
        if (counted := children.get((endpoint, status))) is None:
            counted = REQUESTS.labels(service, endpoint, str(status)), LATENCY.labels(service, endpoint)
            children[endpoint, status] = counted
        counted[0].inc()
        counted[1].observe(time.perf_counter() - this_g().get("metrics_started", time.perf_counter()))
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        if not sends_operator_token(token):
            refused = error_response(401, "unauthenticated", "send the metrics token: Authorization: Bearer <token>")
            refused.headers["WWW-Authenticate"] = "Bearer"
            return refused
        body = generate_latest(_per_process_metrics()) + generate_latest(registry)
        return Response(body, mimetype=CONTENT_TYPE_LATEST)


def _per_process_metrics() -> CollectorRegistry:
    """This process's counters, or every worker's added up when they are kept in files (gunicorn_conf)."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    every_worker = CollectorRegistry()
    multiprocess.MultiProcessCollector(every_worker)  # type: ignore[no-untyped-call]
    return every_worker
