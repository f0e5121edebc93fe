"""Who works with whom, and who waits: one caseload per programme, in the stream ``caseload-<programme>``.

Every capacity decision for a programme appends to that one stream with the
version it read, so two racing assignments cannot both pass a capacity check:
one of them conflicts and decides again. Nothing is ever over capacity, and a
waitlisted citizen leaves the waitlist only in the same append that assigns
them or closes their case.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from shared.domain.case import Case, CaseStatus, Invalid, Refused, require_in_date_order
from shared.domain.events import CaseAssigned, CaseLeftWaitlist, CaseReleased, CaseWaitlisted, WaitingForChanged
from shared.domain.programme import Programme
from shared.events import DomainEvent


def caseload_stream(programme_id: str) -> str:
    return f"caseload-{programme_id}"


@dataclass(frozen=True)
class Caseload:
    programme_id: str
    assignments: dict[str, str] = field(default_factory=dict)  # case id -> worker id
    waitlist: tuple[tuple[str, date], ...] = ()  # (case id, waiting since), in the order recorded
    version: int = 0
    # Every assignment a case has had, oldest first: [worker, from, until or None, via]. Reassignment keeps history.
    history: dict[str, tuple[tuple[str, str, str | None, str], ...]] = field(default_factory=dict)
    waiting_for: dict[str, str] = field(default_factory=dict)  # waitlisted case id -> the method asked for

    def load(self, worker_id: str) -> int:
        return sum(1 for w in self.assignments.values() if w == worker_id)

    def cases_of(self, worker_id: str) -> list[str]:
        return sorted(c for c, w in self.assignments.items() if w == worker_id)

    def is_waitlisted(self, case_id: str) -> bool:
        return any(c == case_id for c, _ in self.waitlist)

    def method_waited_for(self, case_id: str, course_method: str | None) -> str | None:
        """The method whose slot a waiting citizen waits for: their course's once enrolled (a course works with a
        relation worker of its own method), else that of the worker they were waitlisted for; None, any slot (a
        wait recorded before the waitlist kept the method)."""
        return course_method or self.waiting_for.get(case_id)

    def longest_waiting_first(self) -> list[tuple[str, date]]:
        """The waitlist by the date each began to wait (a waitlisting may be recorded days after its date);
        those of one date in the order recorded."""
        return sorted(self.waitlist, key=lambda waiting: waiting[1])


def caseload_to_doc(c: Caseload) -> dict[str, Any]:
    return {
        "programme_id": c.programme_id,
        "assignments": c.assignments,
        "waitlist": [[case_id, since.isoformat()] for case_id, since in c.waitlist],
        "version": c.version,
        "history": {case_id: [list(s) for s in spells] for case_id, spells in c.history.items()},
        "waiting_for": c.waiting_for,
    }


def caseload_from_doc(d: dict[str, Any]) -> Caseload:
    waitlist = tuple((case_id, date.fromisoformat(since)) for case_id, since in d["waitlist"])
    history = {case_id: tuple((w, a, u, v) for w, a, u, v in spells) for case_id, spells in d["history"].items()}
    return Caseload(d["programme_id"], dict(d["assignments"]), waitlist, d["version"], history, dict(d["waiting_for"]))


def evolve_caseload(caseload: Caseload, event: DomainEvent, on: date) -> Caseload:
    caseload = replace(caseload, version=caseload.version + 1)
    match event:
        case CaseAssigned(case_id=case_id, worker_id=worker_id, via=via):
            spells = (*caseload.history.get(case_id, ()), (worker_id, on.isoformat(), None, via))
            return replace(
                caseload,
                assignments={**caseload.assignments, case_id: worker_id},
                waitlist=tuple(w for w in caseload.waitlist if w[0] != case_id),
                history={**caseload.history, case_id: spells},
                waiting_for=_without(caseload.waiting_for, case_id),
            )
        case CaseReleased(case_id=case_id):
            *earlier, (worker, start, _, via) = caseload.history[case_id]
            spells = (*earlier, (worker, start, on.isoformat(), via))
            return replace(
                caseload,
                assignments={c: w for c, w in caseload.assignments.items() if c != case_id},
                history={**caseload.history, case_id: spells},
            )
        case CaseWaitlisted(case_id=case_id, method=method):
            waiting_for = {**caseload.waiting_for, case_id: method} if method else caseload.waiting_for
            return replace(caseload, waitlist=(*caseload.waitlist, (case_id, on)), waiting_for=waiting_for)
        case WaitingForChanged(case_id=case_id, method=method):
            return replace(caseload, waiting_for={**caseload.waiting_for, case_id: method})
        case CaseLeftWaitlist(case_id=case_id):
            return replace(
                caseload,
                waitlist=tuple(w for w in caseload.waitlist if w[0] != case_id),
                waiting_for=_without(caseload.waiting_for, case_id),
            )
    raise ValueError(f"caseload {caseload.programme_id}: no rule for {type(event).__name__}")


def _without(waiting_for: dict[str, str], case_id: str) -> dict[str, str]:
    return {c: m for c, m in waiting_for.items() if c != case_id} if case_id in waiting_for else waiting_for


def _require_after_last_assignment_change(caseload: Caseload, case_id: str, on: date) -> None:
    """A case's assignments and its place on the waitlist change in date order: one dated before its last start
    or end, or before it joined the waitlist, would count a caseload or the waitlist below zero on the dates
    between, or a wait of negative days (and the report for those dates would say so)."""
    if (last := last_assignment_change(caseload, case_id)) is not None:
        require_in_date_order(last, on, "change of relation worker or of the waitlist")


def last_assignment_change(caseload: Caseload, case_id: str) -> date | None:
    """The date of the case's last assignment, reassignment, release or waitlisting, if it had one."""
    changes = [date.fromisoformat(until or start) for _, start, until, _ in caseload.history.get(case_id, ())[-1:]]
    changes += [since for waiting, since in caseload.waitlist if waiting == case_id]
    return max(changes, default=None)


def decide_assignment(
    caseload: Caseload, programme: Programme, case: Case, worker_id: str, waitlist_if_full: bool, on: date
) -> list[DomainEvent]:
    """Assign (or reassign, keeping history) a case to a worker; beyond capacity refuse, or waitlist if asked."""
    _require_after_last_assignment_change(caseload, case.case_id, on)
    if worker_id not in programme.workers:
        raise Invalid({"worker_id": ["not a relation worker of this programme"]})
    if case.status not in (CaseStatus.IN_ASSESSMENT, CaseStatus.ENROLLED):
        code = "case_closed" if not case.status.is_open else "not_in_assessment"
        raise Refused(code, f"a case is assigned in assessment or enrolled; this one is {case.status.value}")
    method = programme.workers[worker_id].method
    if case.method is not None and method != case.method:
        raise Refused(
            "method_mismatch", f"{worker_id} works with {method.upper()}; the course is {case.method.upper()}"
        )
    current = caseload.assignments.get(case.case_id)
    if current == worker_id:
        raise Refused("already_assigned", f"the case is already assigned to {worker_id}")
    load, capacity = caseload.load(worker_id), programme.capacity_of(worker_id)
    if load >= capacity:
        if waitlist_if_full and current is None:
            if not caseload.is_waitlisted(case.case_id):
                return [CaseWaitlisted(case_id=case.case_id, method=method)]
            if method == caseload.method_waited_for(case.case_id, case.method):
                raise Refused(
                    "already_waitlisted", f"the citizen is already on the waitlist, for a {method.upper()} slot"
                )
            return [WaitingForChanged(case_id=case.case_id, method=method)]  # their place kept
        raise Refused("worker_at_capacity", f"{worker_id} already works with {load} of {capacity} citizens")
    events: list[DomainEvent] = []
    if current is not None:
        events.append(CaseReleased(case_id=case.case_id, worker_id=current, reason="reassigned"))
    events.append(CaseAssigned(case_id=case.case_id, worker_id=worker_id, via="request"))
    return events


def decide_wait_on_enrolment(caseload: Caseload, case_id: str, method: str) -> list[DomainEvent]:
    """A waitlisted citizen whose course enrols waits from then on for a slot of its method (a course works with
    a relation worker of its own method), in the enrolment's append. Dated as the enrolment, which may be before
    the wait began: nothing reads the date of such a change (offers read the method, reports count waits)."""
    if caseload.is_waitlisted(case_id) and caseload.waiting_for.get(case_id) != method:
        return [WaitingForChanged(case_id=case_id, method=method)]
    return []


def decide_release(caseload: Caseload, case_id: str, reason: str, on: date) -> list[DomainEvent]:
    """When a case ends, its worker's slot frees and it leaves the waitlist, in the same append."""
    _require_after_last_assignment_change(caseload, case_id, on)
    events: list[DomainEvent] = []
    if (worker_id := caseload.assignments.get(case_id)) is not None:
        events.append(CaseReleased(case_id=case_id, worker_id=worker_id, reason=reason))
    if caseload.is_waitlisted(case_id):
        events.append(CaseLeftWaitlist(case_id=case_id, reason=reason))
    return events


def assigned_method(caseload: Caseload, programme: Programme, case_id: str) -> str | None:
    """The method of the relation worker the case is assigned to, if it is: the method its course is enrolled in."""
    worker_id = caseload.assignments.get(case_id)
    return programme.workers[worker_id].method if worker_id is not None else None


def free_slots(caseload: Caseload, programme: Programme) -> dict[str, int]:
    """Each relation worker's free slots, for those who have one (workers in id order)."""
    load = Counter(caseload.assignments.values())
    free = {w: programme.capacity_of(w) - load[w] for w in sorted(programme.workers)}
    return {w: n for w, n in free.items() if n > 0}


def decide_offers(
    caseload: Caseload, programme: Programme, methods: Mapping[str, str | None], on: date
) -> list[DomainEvent]:
    """Offer the free slots to the waiting citizens, each a slot that suits them: a course enrolled in a method
    (``methods``: each waiting case's, None before its enrolment) waits for a worker of that method, one not yet
    enrolled for a worker of the method of the worker it was waitlisted for (one waitlisted before the waitlist
    recorded that, v1, takes any). Who is placed: the longest-waiting first, each kept if all kept so far can
    still be placed, which places as many as the slots allow and, among those, the longest waiting (a citizen
    passed over could only have been placed in the stead of one who waited longer). Then those bound to a method
    take slots of it and the rest what is left, workers in id order. None after the funding end: no course runs
    past it, and an assignment dated then would leave a course no closure date."""
    if on > programme.funding_end:
        return []
    free = free_slots(caseload, programme)
    slots = Counter[str]()
    for worker_id, n in free.items():
        slots[programme.workers[worker_id].method] += n
    wanted = {case_id: caseload.method_waited_for(case_id, methods.get(case_id)) for case_id, _ in caseload.waitlist}
    placed: list[str] = []
    bound = Counter[str]()  # those placed who need a slot of one method, per method
    for case_id, _ in caseload.longest_waiting_first():
        method = wanted[case_id]
        if len(placed) < slots.total() and (method is None or bound[method] < slots[method]):
            placed.append(case_id)
            if method is not None:
                bound[method] += 1
    worker_of: dict[str, str] = {}
    for case_id in sorted(placed, key=lambda c: wanted[c] is None):  # those bound to a method first (a stable sort)
        method = wanted[case_id]
        worker_id = next(w for w, n in free.items() if n > 0 and method in (None, programme.workers[w].method))
        free[worker_id] -= 1
        worker_of[case_id] = worker_id
    return [CaseAssigned(case_id=c, worker_id=worker_of[c], via="waitlist") for c in placed]
