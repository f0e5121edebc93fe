"""The functions reporting's RQ workers run (enqueued by dotted path, see ``shared.nudges``)."""

from __future__ import annotations

from services.reporting.projection import ReportingProjection
from shared.worker import current_runner


def catch_up(partition: int) -> int:
    return current_runner(ReportingProjection()).catch_up(partition)


def sweep() -> int:
    return current_runner(ReportingProjection()).catch_up_all()
