"""A programme's rules, folded from its events, and the date rules that follow from them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from shared.domain.calendar import add_months, months_between
from shared.domain.events import (
    ProgrammeChanged,
    ProgrammeDefined,
    WorkerCapacityChanged,
    WorkerJoined,
)
from shared.events import DomainEvent

METHODS = ("cti", "icm", "act")
# CTI is time-limited support in phases (pre-CTI, then phases 1-3); ICM and ACT courses follow no phase plan, so
# they have no phases, no scheduled moves and no CTI fidelity rating.
PHASED_METHODS = ("cti",)
DANISH_LIFE_AREAS = (
    "housing",
    "mental_health",
    "physical_health",
    "finances",
    "daily_activities",
    "network",
    "substance_use",
    "education_employment",
)
DANISH_PHASE_NAMES = {
    "pre_cti": "kontaktskabelse",
    "phase_1": "fase 1: planlægning og igangsættelse",
    "phase_2": "fase 2: afprøvning og tilpasning",
    "phase_3": "fase 3: ansvarsoverdragelse og forankring",
}


@dataclass(frozen=True)
class Phase:
    name: str
    months: int


@dataclass(frozen=True)
class Worker:
    worker_id: str
    method: str
    capacity: int | None  # None: the programme's caseload limit, whatever it is at the time


@dataclass(frozen=True)
class Programme:
    programme_id: str
    name: str
    methods: tuple[str, ...]
    course_months: int
    phases: tuple[Phase, ...]
    recruitment_start: date
    recruitment_end: date
    funding_end: date
    caseload_limit: int
    assessment_interval_months: int
    scale_areas: tuple[str, ...]
    scale_min: int
    scale_max: int
    purposes: tuple[str, ...]
    targets: tuple[tuple[str, int], ...]
    workers: dict[str, Worker] = field(default_factory=dict)
    version: int = 0

    def capacity_of(self, worker_id: str) -> int:
        """The worker's own capacity (a part-timer's, lower) or the programme's caseload limit, never above it: the
        limit is per relation worker. A lowered limit lowers every capacity with it."""
        capacity = self.workers[worker_id].capacity
        return self.caseload_limit if capacity is None else min(capacity, self.caseload_limit)

    def phase_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.phases)

    def in_recruitment_window(self, day: date) -> bool:
        return self.recruitment_start <= day <= self.recruitment_end

    def to_dict(self) -> dict[str, Any]:
        return {
            "programme_id": self.programme_id,
            "name": self.name,
            "methods": list(self.methods),
            "course_months": self.course_months,
            "phases": [
                {"name": p.name, "months": p.months, "name_da": DANISH_PHASE_NAMES.get(p.name, p.name)}
                for p in self.phases
            ],
            "recruitment_start": self.recruitment_start.isoformat(),
            "recruitment_end": self.recruitment_end.isoformat(),
            "funding_end": self.funding_end.isoformat(),
            "caseload_limit": self.caseload_limit,
            "assessment_interval_months": self.assessment_interval_months,
            "scale": {"areas": list(self.scale_areas), "min": self.scale_min, "max": self.scale_max},
            "purposes": list(self.purposes),
            "targets": dict(self.targets),
            "workers": [
                {"worker_id": w.worker_id, "method": w.method, "capacity": self.capacity_of(w.worker_id)}
                for w in sorted(self.workers.values(), key=lambda w: w.worker_id)
            ],
            "version": self.version,
        }


def programme_to_doc(p: Programme) -> dict[str, Any]:
    """Everything needed to rebuild the programme (its ``to_dict`` is the API view)."""
    return {
        **{k: v for k, v in p.__dict__.items() if k not in ("phases", "workers", "targets")},
        "recruitment_start": p.recruitment_start.isoformat(),
        "recruitment_end": p.recruitment_end.isoformat(),
        "funding_end": p.funding_end.isoformat(),
        "phases": [[ph.name, ph.months] for ph in p.phases],
        "workers": [[w.worker_id, w.method, w.capacity] for w in p.workers.values()],
        "targets": [list(t) for t in p.targets],
    }


def programme_from_doc(d: dict[str, Any]) -> Programme:
    return Programme(
        **{
            **d,
            "methods": tuple(d["methods"]),
            "scale_areas": tuple(d["scale_areas"]),
            "purposes": tuple(d["purposes"]),
            "recruitment_start": date.fromisoformat(d["recruitment_start"]),
            "recruitment_end": date.fromisoformat(d["recruitment_end"]),
            "funding_end": date.fromisoformat(d["funding_end"]),
            "phases": tuple(Phase(name, months) for name, months in d["phases"]),
            "workers": {w: Worker(w, method, capacity) for w, method, capacity in d["workers"]},
            "targets": tuple((m, n) for m, n in d["targets"]),
        }
    )


def evolve_programme(programme: Programme | None, programme_id: str, event: DomainEvent) -> Programme:
    if programme is None:
        if not isinstance(event, ProgrammeDefined):
            raise ValueError(f"programme {programme_id} must start with ProgrammeDefined")
        return Programme(
            programme_id=programme_id,
            name=event.name,
            methods=tuple(event.methods),
            course_months=event.course_months,
            phases=tuple(Phase(name, months) for name, months in event.phases),
            recruitment_start=event.recruitment_start,
            recruitment_end=event.recruitment_end,
            funding_end=event.funding_end,
            caseload_limit=event.caseload_limit,
            assessment_interval_months=event.assessment_interval_months,
            scale_areas=tuple(event.scale_areas),
            scale_min=event.scale_min,
            scale_max=event.scale_max,
            purposes=tuple(event.purposes),
            targets=tuple(sorted(event.targets.items())),
            version=1,
        )
    bumped = replace(programme, version=programme.version + 1)
    match event:
        case ProgrammeChanged():
            changes = {k: v for k, v in event.__dict__.items() if v is not None}
            return replace(bumped, **changes)
        case WorkerJoined(worker_id=worker_id, method=method, capacity=capacity):
            return replace(bumped, workers={**programme.workers, worker_id: Worker(worker_id, method, capacity)})
        case WorkerCapacityChanged(worker_id=worker_id, capacity=capacity):
            worker = replace(programme.workers[worker_id], capacity=capacity)
            return replace(bumped, workers={**programme.workers, worker_id: worker})
    raise ValueError(f"programme {programme_id}: no rule for {type(event).__name__}")


@dataclass(frozen=True)
class CourseDates:
    enrolled_on: date
    full_end: date  # enrolment + the programme's course length
    planned_end: date  # the earlier of full_end and the funding end
    truncated: bool
    planned_months: int
    actual_months: float


def course_dates(programme: Programme, enrolled_on: date) -> CourseDates:
    """Planned end = min(enrolment + course length, funding end); flagged when the funding end cuts it short.
    Never before the enrolment: a funding end moved before it (refused now, possible in an older log) leaves a
    course of no months, not a date the course could not have."""
    full_end = add_months(enrolled_on, programme.course_months)
    planned_end = max(enrolled_on, min(full_end, programme.funding_end))
    return CourseDates(
        enrolled_on=enrolled_on,
        full_end=full_end,
        planned_end=planned_end,
        truncated=planned_end < full_end,
        planned_months=programme.course_months,
        actual_months=round(months_between(enrolled_on, planned_end), 1),
    )


def due_phase_moves(programme: Programme, phase: str, entered_on: date, today: date) -> list[tuple[str, date]]:
    """The plan's next phases whose start date has come, counted from the last phase entered: each the same day
    the plan's months later (from 31 October, 4 months is 28 February, 8 months 30 June, not 28 June)."""
    names = programme.phase_names()
    moves: list[tuple[str, date]] = []
    index = names.index(phase)
    months = 0
    while index + 1 < len(names):
        months += programme.phases[index].months
        start = add_months(entered_on, months)
        if start > today:
            break
        index += 1
        moves.append((names[index], start))
    return moves
