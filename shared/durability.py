"""Is the event log durable? Checked by every service at start-up, and reported by health checks."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Durability:
    durable: bool
    detail: str


def check_durability(connection: redis.Redis) -> Durability:
    try:
        info = connection.info("persistence")
        server = connection.info("server")
    except redis.ResponseError:
        return Durability(False, "the server does not report its persistence settings")
    if server.get("caseflow_embedded"):
        return Durability(False, "embedded in-memory store: everything is lost when the suite stops")
    if int(info.get("aof_enabled", 0)) != 1:
        return Durability(
            False,
            "AOF is off: accepted events can be lost on a restart (set appendonly yes, appendfsync everysec)",
        )
    return Durability(True, "AOF is on")


def warn_if_not_durable(connection: redis.Redis, service: str) -> Durability:
    durability = check_durability(connection)
    if durability.durable:
        log.info("%s: event log is durable (%s)", service, durability.detail)
    else:
        log.warning("%s: THE EVENT LOG IS NOT DURABLE: %s", service, durability.detail)
    return durability
