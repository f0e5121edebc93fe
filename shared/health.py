"""Readiness: how far each read model is behind the log, whether one is damaged, and the queues' waiting and
failed jobs."""

from __future__ import annotations

from typing import Any

import redis

from shared.bootstrap import event_store
from shared.cli import ALL
from shared.config import Settings
from shared.nudges import queue_health
from shared.projections import active_namespace, damage, lag


def readiness(connection: redis.Redis) -> tuple[bool, dict[str, Any]]:
    settings = Settings.from_env()
    store = event_store(connection, settings)
    namespaces = {name: active_namespace(connection, settings.key_prefix, p) for name, p in ALL.items()}
    lags = {name: lag(store, namespace) for name, namespace in namespaces.items()}
    damaged = {name: marked for name, namespace in namespaces.items() if (marked := damage(connection, namespace))}
    report = {
        "log_head": store.head(),
        "projection_lag": lags,
        "max_lag": settings.ready_max_lag,
        "queues": queue_health(connection, settings.key_prefix),
    }
    if damaged:
        report["damaged"] = damaged  # per read model, per partition: rebuild it (``projections rebuild``)
    return not damaged and all(n <= settings.ready_max_lag for n in lags.values()), report
