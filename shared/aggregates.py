"""Loading an aggregate: fold its stream from the log. Used by intake and by caseflow's policy jobs."""

from __future__ import annotations

from shared.domain.case import Case, evolve
from shared.domain.caseload import Caseload, caseload_stream, evolve_caseload
from shared.domain.programme import Programme, evolve_programme
from shared.eventstore import EventStore


class NotFound(Exception):
    pass


def programme_stream(programme_id: str) -> str:
    return f"programme-{programme_id}"


def load_case(store: EventStore, case_id: str) -> Case:
    case: Case | None = None
    for event in store.read_stream(case_id):
        case = evolve(case, case_id, event.payload, event.occurred_on)
    if case is None:
        raise NotFound("no such case")
    return case


def load_programme(store: EventStore, programme_id: str) -> Programme:
    programme: Programme | None = None
    for event in store.read_stream(programme_stream(programme_id)):
        programme = evolve_programme(programme, programme_id, event.payload)
    if programme is None:
        raise NotFound("no such programme")
    return programme


def load_caseload(store: EventStore, programme_id: str) -> Caseload:
    caseload = Caseload(programme_id)
    for event in store.read_stream(caseload_stream(programme_id)):
        caseload = evolve_caseload(caseload, event.payload, event.occurred_on)
    return caseload
