"""Wiring: one place that builds the Redis connection, the event store and projection runners."""

from __future__ import annotations

import logging

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from shared.config import Settings
from shared.events.catalogue import REGISTRY
from shared.eventstore import EventStore
from shared.projections import Projection, ProjectionRunner

log = logging.getLogger(__name__)


def connect(settings: Settings) -> redis.Redis:
    """The Redis holding the log: through Sentinel when sentinels are configured, else at REDIS_URL."""
    if settings.redis_sentinels:
        sentinel = Sentinel(list(settings.redis_sentinels), socket_timeout=5)
        primary: redis.Redis = sentinel.master_for(
            settings.redis_sentinel_service, retry=_retry(), retry_on_error=[redis.ConnectionError, redis.TimeoutError]
        )
        return primary
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set (the local runner `caseflow-suite up` sets it for you)")
    # Bounded retries with backoff ride out a Redis restart or a dropped connection. Re-sending is safe:
    # an append repeated after a lost reply finds its event ids already in the log and writes nothing.
    return redis.Redis.from_url(
        settings.redis_url,
        health_check_interval=30,
        retry=_retry(),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=8)


def event_store(connection: redis.Redis, settings: Settings) -> EventStore:
    return EventStore(
        connection,
        REGISTRY,
        prefix=settings.key_prefix,
        partitions=settings.partitions,
        idempotency_ttl_s=settings.idempotency_ttl_s,
    )


def projection_runner(connection: redis.Redis, settings: Settings, projection: Projection) -> ProjectionRunner:
    return ProjectionRunner(
        event_store(connection, settings),
        projection,
        prefix=settings.key_prefix,
        lease_ttl_ms=settings.lease_ttl_ms,
        batch_size=settings.batch_size,
    )
