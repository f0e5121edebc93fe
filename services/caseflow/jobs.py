"""The functions caseflow's RQ workers run (enqueued by dotted path, see ``shared.nudges``)."""

from __future__ import annotations

from services.caseflow.projection import CaseflowProjection
from shared.worker import current_runner


def catch_up(partition: int) -> int:
    return current_runner(CaseflowProjection()).catch_up(partition)


def sweep() -> int:
    return current_runner(CaseflowProjection()).catch_up_all()
