"""The functions caseflow's RQ workers run (enqueued by dotted path: see ``shared.nudges`` and the scheduler)."""

from __future__ import annotations

from datetime import date

from services.caseflow import policies
from services.caseflow.projection import CaseflowProjection
from services.caseflow.queries import ReadModel
from shared.config import Settings
from shared.worker import current_runner, current_store


def catch_up(partition: int) -> int:
    return current_runner(CaseflowProjection()).catch_up(partition)


def sweep() -> int:
    return current_runner(CaseflowProjection()).catch_up_all()


def offer_free_slots(programme_id: str) -> int:
    return policies.offer_free_slots(current_store(), Settings.from_env().key_prefix, programme_id)


def offer_free_slots_everywhere() -> int:
    store, prefix = current_store(), Settings.from_env().key_prefix
    return sum(policies.offer_free_slots(store, prefix, p) for p in ReadModel(store.redis, prefix).programme_ids())


def emit_due_phase_moves(on: str | None = None) -> int:
    return policies.emit_due_phase_moves(
        current_store(), Settings.from_env().key_prefix, date.fromisoformat(on) if on else None
    )
