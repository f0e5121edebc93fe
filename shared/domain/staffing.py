"""Decisions about a programme's rules and its relation workers: capacity never drops below a caseload."""

from __future__ import annotations

from dataclasses import replace

from shared.domain.case import Invalid, Refused
from shared.domain.caseload import Caseload
from shared.domain.events import ProgrammeChanged, WorkerCapacityChanged, WorkerJoined
from shared.domain.programme import Programme


def decide_programme_change(programme: Programme, caseload: Caseload, change: ProgrammeChanged) -> ProgrammeChanged:
    after = replace(programme, **{k: v for k, v in change.__dict__.items() if v is not None})
    if after.recruitment_end < after.recruitment_start:
        raise Invalid({"recruitment_end": ["must not be before recruitment_start"]})
    if after.funding_end < after.recruitment_end:  # or a course enrolled late in the window would end before it began
        raise Invalid({"funding_end": ["must not be before recruitment_end"]})
    _never_over_capacity(programme, after, caseload)
    return change


def decide_add_worker(programme: Programme, worker_id: str, method: str, capacity: int | None) -> WorkerJoined:
    if worker_id in programme.workers:
        raise Refused("worker_exists", f"{worker_id} is already a worker of this programme")
    if method not in programme.methods:
        raise Invalid({"method": [f"this programme offers {', '.join(programme.methods)}"]})
    _within_caseload_limit(programme, capacity)
    return WorkerJoined(worker_id=worker_id, method=method, capacity=capacity)


def decide_capacity(
    programme: Programme, caseload: Caseload, worker_id: str, capacity: int | None
) -> WorkerCapacityChanged:
    if worker_id not in programme.workers:
        raise Refused("unknown_worker", f"{worker_id} is not a worker of this programme")
    _within_caseload_limit(programme, capacity)
    after = replace(
        programme, workers={**programme.workers, worker_id: replace(programme.workers[worker_id], capacity=capacity)}
    )
    _never_over_capacity(programme, after, caseload)
    return WorkerCapacityChanged(worker_id=worker_id, capacity=capacity)


def _within_caseload_limit(programme: Programme, capacity: int | None) -> None:
    if capacity is not None and capacity > programme.caseload_limit:
        raise Invalid({"capacity": [f"at most the programme's caseload limit per worker, {programme.caseload_limit}"]})


def _never_over_capacity(before: Programme, after: Programme, caseload: Caseload) -> None:
    """A change may not lower a worker's capacity below their caseload. Only capacities it lowers are checked: a
    log from before capacities were capped at the caseload limit may hold a worker above it, and that must not
    refuse every other change (a funding extension, another worker's capacity) until they are reassigned."""
    for worker_id in sorted(after.workers):
        load, capacity = caseload.load(worker_id), after.capacity_of(worker_id)
        if capacity < before.capacity_of(worker_id) and load > capacity:
            raise Refused(
                "capacity_below_caseload",
                f"{worker_id} works with {load} citizens: capacity cannot go below that (reassign first)",
            )
