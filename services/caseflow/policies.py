"""Caseflow's policies: what the workers do on their own when the log says it is time.

- A freed slot (closure, reassignment, more capacity) is offered to the
  longest-waiting citizen: an assignment appended with the caseload's version,
  so any number of workers racing on it, and intake's own assignments, can
  never put a worker over capacity.
- Phase moves that fall due under the phase plan are appended dated on the day
  they fell due. Their event ids are derived from (case, phase, date), so two
  schedulers that race append each move once.
"""

from __future__ import annotations

import logging
import uuid
from datetime import date

from services.caseflow.queries import ReadModel
from shared.aggregates import NotFound, load_case, load_caseload, load_cases, load_programme, programme_stream
from shared.domain.case import CaseStatus, planned_phase_moves
from shared.domain.caseload import caseload_stream, decide_offers, free_slots
from shared.domain.events import CaseAssigned, PhaseEntered
from shared.domain.programme import course_dates
from shared.events import NewEvent
from shared.events.envelope import start_of_day, today
from shared.eventstore import EventStore, PartialDuplicate, StreamWrite, WrongExpectedVersion
from shared.nudges import nudge_streams

log = logging.getLogger(__name__)
ACTOR = "caseflow"
ATTEMPTS = 5
PHASE_MOVES = uuid.UUID("5b1f6a62-3c8e-4f0e-9a43-1f6f3c2b7d10")


def offer_free_slots(store: EventStore, prefix: str, programme_id: str, on: date | None = None) -> int:
    """Assign waitlisted citizens to free slots. Returns how many were offered."""
    on = on or today()
    for _ in range(ATTEMPTS):
        try:
            programme = load_programme(store, programme_id)
        except NotFound:
            return 0
        caseload = load_caseload(store, programme_id)
        if not caseload.waitlist or not free_slots(caseload, programme):
            return 0
        waiting = load_cases(store, [case_id for case_id, _ in caseload.waitlist])
        offers = decide_offers(caseload, programme, {c: case.method for c, case in waiting.items()}, on)
        if not offers:
            return 0
        stream = caseload_stream(programme_id)
        events = [NewEvent(stream, offer, start_of_day(on), ACTOR) for offer in offers]
        # Each offered case read-checked too: one enrolled meanwhile (in a method) is decided on again.
        offered = [waiting[offer.case_id] for offer in offers if isinstance(offer, CaseAssigned)]
        try:
            store.append_many(
                [
                    StreamWrite(stream, events, caseload.version),
                    StreamWrite(programme_stream(programme_id), [], programme.version),
                    *(StreamWrite(case.case_id, [], case.version) for case in offered),
                ]
            )
        except WrongExpectedVersion:
            continue  # someone else changed the caseload: decide again on what it is now
        nudge_streams(store.redis, prefix, store.partitions, [stream])
        log.info("offered %d waitlisted case(s) in %s", len(offers), programme_id)
        return len(offers)
    log.warning("gave up offering slots in %s after %d lost races; the next sweep retries", programme_id, ATTEMPTS)
    return 0


def emit_due_phase_moves(store: EventStore, prefix: str, on: date | None = None) -> int:
    """Append every scheduled phase move due by ``on``, dated when it fell due. Returns how many."""
    on = on or today()
    model = ReadModel(store.redis, prefix)
    emitted = 0
    for programme_id in model.programme_ids():
        programme = load_programme(store, programme_id)
        for seen in model.cases(programme_id):
            if seen.status is not CaseStatus.ENROLLED:
                continue
            case = load_case(store, seen.case_id)  # the projection may lag; decide on the log itself
            if case.status is not CaseStatus.ENROLLED or not case.phases or case.enrolled_on is None:
                continue
            until = min(on, course_dates(programme, case.enrolled_on).planned_end)
            moves = planned_phase_moves(case, programme, until)
            if not moves:
                continue
            events = [
                NewEvent(
                    case.case_id,
                    PhaseEntered(phase=phase, reason="phase plan", scheduled=True),
                    start_of_day(due),
                    ACTOR,
                    event_id=str(uuid.uuid5(PHASE_MOVES, f"{case.case_id}:{phase}:{due.isoformat()}")),
                )
                for phase, due in moves
            ]
            # Read-checking the programme, as intake's commands do: a funding end cut since it was read would
            # otherwise let moves dated after it in.
            writes = [
                StreamWrite(case.case_id, events, case.version),
                StreamWrite(programme_stream(programme_id), [], programme.version),
            ]
            try:
                store.append_many(writes)
            except WrongExpectedVersion as lost:
                if lost.stream_id == programme_stream(programme_id):
                    programme = load_programme(store, programme_id)  # for the cases after this one
                continue  # this case (or its programme) moved on: the next run decides again
            except PartialDuplicate:
                continue  # another run wrote some of these moves: the next run decides again
            nudge_streams(store.redis, prefix, store.partitions, [case.case_id])
            emitted += len(events)
    return emitted
