"""The peer for the projection benchmark: the same read models written the obvious way.

One RQ job per event, enqueued as the event is appended; each job reads its event, reads the documents
it touches, folds the event with the same projection code and writes the result back: no batching, no
partitions, no checkpoints. (It is also not correct under several workers or a redelivered job: it
would apply an event twice. It is here only to show what the batched, checkpointed design costs and buys.)
"""

from __future__ import annotations

from functools import cache

import redis

from services.caseflow.projection import CaseflowProjection
from services.reporting.projection import ReportingProjection
from shared.bootstrap import event_store
from shared.config import Settings
from shared.eventstore import EventStore
from shared.projections import Projection, ProjectionState
from shared.redis_values import write

PROJECTIONS: dict[str, Projection] = {"caseflow": CaseflowProjection(), "reporting": ReportingProjection()}


@cache
def _store(url: str) -> EventStore:
    return event_store(redis.Redis.from_url(url), Settings.from_env({}))


def project_event(url: str, name: str, position: int, namespace: str) -> None:
    """The RQ job: one event into one read model."""
    store = _store(url)
    state = ProjectionState(store.redis, namespace)
    PROJECTIONS[name].apply(store.read_all(after=position - 1, limit=1), state)
    write(store.redis, state.take_writes())
