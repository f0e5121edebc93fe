"""Reporting read models, projected from the log, built so that no query grows with the number of events.

Every statistic is a counter changed by commutative operations (HINCRBY,
ZADD LT), so partitions may commit in any order; what a counter needs to know
about one case (its status, partner, method...) is kept in that case's small
document, owned by the case's partition.

- Status on any date: each status change adds -1 for the old status and +1 for
  the new one on the day it happened (overall, per partner, per method once
  enrolled), kept as calendar sums (``calendar_sums``): the status on a date is
  read from three small hashes, bounded by neither events nor days.
- Distinct citizens: the first day each citizen was referred (ZADD LT). Each referral's status moves are kept
  in a small document of its own, and each citizen's referrals are indexed: the workers settle the status of
  those with more than one after their batches (``settle``), so the status of citizens on a date is calendar
  sums too.
- Intake and referral outcomes: per partner and referral month (the cohort), so they can
  be filtered by period. A reopened course is a new course, not a referral.
- Courses, the phases they reached, the success criteria and the waitlist's waits are
  calendar sums too, each change on the day it happened: a report on a past date
  counts what had happened by then, not what has happened since. The success criteria
  count citizens: a citizen with several courses is settled as for the status.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date
from typing import Any

import redis

from services.reporting.calendar_sums import add_on
from services.reporting.criteria import criteria_steps
from services.reporting.settle import (
    CITIZENS_TO_SETTLE,
    citizen_referrals,
    referral_range,
    referral_summary,
    settle_citizens,
)
from shared.domain import events as ev
from shared.domain.case import discharged_early, voided_by_closure
from shared.domain.programme import evolve_programme, programme_from_doc, programme_to_doc
from shared.events import RecordedEvent
from shared.projections import ProjectionState

OUTCOMES = {
    ev.AssessmentStarted: ("in_assessment", "accepted"),
    ev.ReferralDeclined: ("declined", "declined"),
    ev.ReferralWithdrawn: ("withdrawn", "withdrawn"),
    ev.ReferredOn: ("referred_on", "referred_on"),
}


def course_doc(case_id: str) -> str:
    return f"course:{case_id}"


def status_deltas(programme_id: str, family: str = "all") -> str:
    """family: "all", "partner:<id>" or "method:<method>". Calendar sums (``calendar_sums``) per status."""
    return f"programme:{programme_id}:status-deltas:{family}"


def first_referrals(programme_id: str, family: str = "all") -> str:
    """Sorted set: citizen id -> ordinal of the first day they were referred."""
    return f"programme:{programme_id}:first-referral:{family}"


def cohorts(programme_id: str) -> str:
    """Field "<partner>|<YYYY-MM>|<counter>": referrals made that month and what became of them."""
    return f"programme:{programme_id}:cohorts"


def programme_doc(programme_id: str) -> str:
    return f"programme:{programme_id}"


def load_deltas(programme_id: str) -> str:
    """Calendar sums of the changes in each worker's caseload."""
    return f"programme:{programme_id}:load-deltas"


def waitlist_deltas(programme_id: str) -> str:
    """Calendar sums of the waitlist: its length ("waiting"), citizens served from it ("served") and the days
    they had waited ("days_waited"), each on the day a citizen joined or left it."""
    return f"programme:{programme_id}:waitlist-deltas"


def waiting(programme_id: str) -> str:
    """The caseload stream's own document: who waits since when, and each worker's courses."""
    return f"programme:{programme_id}:waiting"


def enrolments(programme_id: str, method: str) -> str:
    """Sorted set: case id -> ordinal of its enrolment day. Truncation is a count above a cutoff."""
    return f"programme:{programme_id}:enrolments:{method}"


def course_deltas(programme_id: str) -> str:
    """Calendar sums per "<method>|<counter>" (closed, completed, early_discharges, closed_days), on the day a
    course closed."""
    return f"programme:{programme_id}:course-deltas"


def phase_deltas(programme_id: str) -> str:
    """Calendar sums of the courses by the last phase they reached: +1 on the day a course enters a phase, -1 on
    the day it moves on to the next (a closed course stays in the phase it ended in)."""
    return f"programme:{programme_id}:phase-deltas"


def families(doc: dict[str, Any]) -> list[str]:
    """The slices every course statistic is kept for: all courses, the referring partner's (a reopened course
    was referred by nobody: its source is the coordinator who reopened it), the method's once enrolled."""
    partner = [] if doc.get("reopened") else [f"partner:{doc['source']}"]
    return ["all", *partner, *([f"method:{doc['method']}"] if doc.get("method") else [])]


def measures(programme_id: str, family: str = "all") -> str:
    """Stars: "star|<area>|n|again|first_sum|latest_sum|improved" and "latest|<area>|<score>" (counts of latest
    scores); WHO-5: "who5|n|again|first_sum|latest_sum|le50|le28|changed10|improved10" (again: courses measured
    more than once); goals: "goal|<area>|set|achieved|dropped"."""
    return f"programme:{programme_id}:measures:{family}"


def success_deltas(programme_id: str, family: str = "all") -> str:
    """Calendar sums of the success criteria's numerators and denominators (see ``criteria.criteria_on``)."""
    return f"programme:{programme_id}:success-deltas:{family}"


# The only events that change what ``criteria.criteria_on`` or ``families`` read (enrolment, method, housing, treatment,
# job-centre category, closure): for the others the difference is nothing, so it is not worked out.
CHANGES_CRITERIA = (
    ev.CitizenEnrolled,
    ev.HousingChanged,
    ev.AddictionTreatmentChanged,
    ev.JobCentreCategoryChanged,
    ev.CourseClosed,
)

# The course document's fields that ``criteria`` reads, kept in the referral's summary for a citizen's count.
CRITERIA_READ = (
    "enrolled_on",
    "closed_on",
    "method",
    "age_band",
    "housing",
    "treatment",
    "jobcentre",
    "activity_ready_on",
    "education_ready_on",
)

WAITING, SERVED, DAYS_WAITED = "waiting", "served", "days_waited"  # the waitlist series' counters


def partners_of(programme_id: str) -> str:
    return f"programme:{programme_id}:partners"


def programme_cases(programme_id: str) -> str:
    return f"programme:{programme_id}:cases"


class ReportingProjection:
    name = "reporting"
    # 5: education-ready "within a year" counted in calendar months; 6: courses measured again, the denominator
    # of improvement; 7: a closure voids the scheduler's phase moves dated after it; 8-9: a reopened course is no
    # referral, nor in the coordinator's partner's figures; 10: courses, phases, success criteria and waits
    # counted on the days they happened, for reports on past dates; 11: a referral declined, withdrawn or referred
    # on after its assessment began is no longer counted as accepted too; 12: ICM and ACT courses have no phases;
    # 13: early discharges by date; 14: education-ready within a year is pending, not failed, while the year is
    # open; 15: early discharges against the planned end the closure recorded; 16: the success criteria read no
    # record dated after a course's closure; 17: each referral's status moves and the citizens with more than
    # one referral, for a status count per citizen; 18: the success criteria count a citizen once over their
    # courses; 19: a citizen's courses begun on the same day are read in one order (rebuilt from the log on upgrade)
    version = 19
    # A commit's counters script holds Redis for its whole length, every append waiting meanwhile: at most 15 ms
    # for 500 events, 46 ms for 2,000 (SLOWLOG, catching up a 247,740-event log).
    batch_size = 500

    def apply(self, events: Sequence[RecordedEvent], state: ProjectionState) -> None:
        state.load_docs(course_doc(e.stream_id) for e in events if e.stream_id.startswith("case-"))
        for event in events:
            if event.stream_id.startswith("case-"):
                self._case_event(event, state)
            elif event.stream_id.startswith("programme-"):
                pid = event.stream_id.removeprefix("programme-")
                before = state.get_doc(programme_doc(pid))
                programme = evolve_programme(programme_from_doc(before) if before else None, pid, event.payload)
                state.put_doc(programme_doc(pid), programme_to_doc(programme))
            elif event.stream_id.startswith("caseload-"):
                self._caseload_event(event.stream_id.removeprefix("caseload-"), event, state)

    @staticmethod
    def _caseload_event(pid: str, event: RecordedEvent, state: ProjectionState) -> None:
        payload, day = event.payload, event.occurred_on.isoformat()
        doc = state.get_doc(waiting(pid)) or {"since": {}, "assigned": {}, "worked_with": {}}
        if isinstance(payload, ev.CaseAssigned | ev.CaseReleased):
            assigned = isinstance(payload, ev.CaseAssigned)
            add_on(state, load_deltas(pid), payload.worker_id, event.occurred_on, 1 if assigned else -1)
            if assigned:
                doc["assigned"][payload.case_id] = payload.worker_id
                doc["worked_with"].setdefault(payload.worker_id, []).append(payload.case_id)
            else:
                doc["assigned"].pop(payload.case_id, None)
        if isinstance(payload, ev.CaseWaitlisted):
            doc["since"][payload.case_id] = day
            add_on(state, waitlist_deltas(pid), WAITING, event.occurred_on, 1)
        elif isinstance(payload, ev.CaseAssigned | ev.CaseLeftWaitlist) and payload.case_id in doc["since"]:
            since = date.fromisoformat(doc["since"].pop(payload.case_id))
            add_on(state, waitlist_deltas(pid), WAITING, event.occurred_on, -1)
            if isinstance(payload, ev.CaseAssigned):
                add_on(state, waitlist_deltas(pid), SERVED, event.occurred_on, 1)
                add_on(state, waitlist_deltas(pid), DAYS_WAITED, event.occurred_on, (event.occurred_on - since).days)
        state.put_doc(waiting(pid), doc)

    def _case_event(self, event: RecordedEvent, state: ProjectionState) -> None:
        payload, on, name = event.payload, event.occurred_on, course_doc(event.stream_id)
        if isinstance(payload, ev.ReferralReceived):
            doc: dict[str, Any] = {
                "programme_id": payload.programme_id,
                "source": payload.source,
                "citizen_id": payload.citizen_id or event.stream_id,
                "referred_on": on.isoformat(),
                "status": "referred",
                "method": None,
                "enrolled_on": None,
                "age_band": payload.age_band,
                **({"reopened": True} if payload.reopened_from else {}),  # a new course for the same citizen
            }
            p, partner = payload.programme_id, payload.source
            self._move(state, doc, None, "referred", on)
            for family in families(doc):
                state.lowest(first_referrals(p, family), doc["citizen_id"], on.toordinal())
            state.score(citizen_referrals(p), f"{doc['citizen_id']}|{event.stream_id}", 0)
            self._put_summary(state, event.stream_id, doc)
            state.add(programme_cases(p), event.stream_id)
            if not payload.reopened_from:
                state.add(partners_of(p), partner)
                state.incr(cohorts(p), f"{partner}|{_month(on)}|referrals")
            state.put_doc(name, doc)
            return
        doc = state.get_doc(name) or {}
        if not doc:
            raise RuntimeError(f"{event.stream_id}: {event.event_type} before its referral")
        status = doc["status"]
        changes_criteria = isinstance(payload, CHANGES_CRITERIA)
        if not changes_criteria:
            self._course_event(event, doc, state)
        else:
            before, families_before = criteria_steps(doc), families(doc)
            self._course_event(event, doc, state)
            self._count_criteria_changes(state, doc, before, families_before)
        state.put_doc(name, doc)
        if doc["status"] != status or changes_criteria:
            self._put_summary(state, event.stream_id, doc)

    @staticmethod
    def _put_summary(state: ProjectionState, case_id: str, doc: dict[str, Any]) -> None:
        """Keep what a count per citizen reads of a referral; a citizen with more than one referral is marked to
        be settled whenever one of them changes it (as their referrals stand at commit, whichever partition
        commits last)."""
        criteria = {k: doc[k] for k in CRITERIA_READ if doc.get(k)}
        state.put_doc(
            referral_summary(case_id), {"families": families(doc), "moves": doc["moves"], "criteria": criteria}
        )
        p, citizen = doc["programme_id"], doc["citizen_id"]
        state.mark_if(CITIZENS_TO_SETTLE, f"{p}|{citizen}", citizen_referrals(p), referral_range(citizen), at_least=2)

    def settle(self, connection: redis.Redis, namespace: str) -> int:
        return settle_citizens(connection, namespace)

    def unsettled(self, connection: redis.Redis, namespace: str) -> bool:
        return bool(connection.exists(f"{namespace}:{CITIZENS_TO_SETTLE}"))

    @staticmethod
    def _count_criteria_changes(
        state: ProjectionState,
        doc: dict[str, Any],
        before: dict[tuple[str, str], int],
        families_before: list[str],
    ) -> None:
        """Move the success-criteria sums by what one event changed, on each day it changed them (an event dated
        before another may change the counts from its day to the other's); a course may also change family."""
        after, families_after = criteria_steps(doc), families(doc)
        for family in dict.fromkeys(families_before + families_after):
            old = before if family in families_before else {}
            new = after if family in families_after else {}
            for day, field in sorted(old.keys() | new.keys()):
                if change := new.get((day, field), 0) - old.get((day, field), 0):
                    add_on(state, success_deltas(doc["programme_id"], family), field, date.fromisoformat(day), change)

    @staticmethod
    def _void_phases_after(state: ProjectionState, doc: dict[str, Any], closed_on: date) -> None:
        """As the domain's ``phases_until``: the scheduler's moves that fell due after a back-dated closure did
        not happen, and the phase sums lose them on the days they were counted."""
        kept = [p for p in doc["phases"] if not voided_by_closure(date.fromisoformat(p[0]), p[2], closed_on)]
        if len(kept) == len(doc["phases"]):
            return
        old, new = _phase_steps(doc["phases"]), _phase_steps(kept)
        for day, phase in sorted(old.keys() | new.keys()):
            if change := new[(day, phase)] - old[(day, phase)]:
                add_on(state, phase_deltas(doc["programme_id"]), phase, date.fromisoformat(day), change)
        doc["phases"], doc["phase"] = kept, kept[-1][1]

    def _course_event(self, event: RecordedEvent, doc: dict[str, Any], state: ProjectionState) -> None:
        payload, on = event.payload, event.occurred_on
        # What became of a partner's referral, by its month; a reopened course was nobody's referral.
        cohort = None if doc.get("reopened") else f"{doc['source']}|{doc['referred_on'][:7]}"
        p = doc["programme_id"]
        if type(payload) in OUTCOMES:
            status, outcome = OUTCOMES[type(payload)]
            if cohort:
                state.incr(cohorts(p), f"{cohort}|{outcome}")
                if doc["status"] == "in_assessment":  # declined or withdrawn after its assessment began:
                    state.incr(cohorts(p), f"{cohort}|accepted", -1)  # each referral has one outcome
            self._move(state, doc, doc["status"], status, on)
        elif isinstance(payload, ev.CitizenEnrolled):
            doc.update(method=payload.method, enrolled_on=on.isoformat(), phase=payload.first_phase)
            self._move(state, doc, doc["status"], "enrolled", on)
            if cohort:
                state.incr(cohorts(p), f"{cohort}|enrolled")
                days = (on - date.fromisoformat(doc["referred_on"])).days
                state.incr(cohorts(p), f"{cohort}|days_to_enrolment", days)
            state.score(enrolments(p, payload.method), event.stream_id, on.toordinal())
            doc["phases"] = []
            if payload.first_phase:  # a CTI course: ICM and ACT have no phases
                add_on(state, phase_deltas(p), payload.first_phase, on, 1)
                doc["phases"] = [[on.isoformat(), payload.first_phase, True]]
        elif isinstance(payload, ev.PhaseEntered) and doc["phases"]:  # as the domain's fold, none without a plan
            add_on(state, phase_deltas(p), doc["phase"], on, -1)
            add_on(state, phase_deltas(p), payload.phase, on, 1)
            doc["phase"] = payload.phase
            doc["phases"].append([on.isoformat(), payload.phase, payload.scheduled])
        elif isinstance(payload, ev.ContactRecorded):
            doc.setdefault("contacts", []).append([on.isoformat(), payload.kind])
        elif isinstance(payload, ev.HousingChanged):
            doc.setdefault("housing", []).append([on.isoformat(), payload.situation])
        elif isinstance(payload, ev.AddictionTreatmentChanged):
            doc.setdefault("treatment", []).append([on.isoformat(), payload.in_treatment])
        elif isinstance(payload, ev.JobCentreCategoryChanged):
            doc.setdefault("jobcentre", []).append([on.isoformat(), payload.category])  # a citizen's, over courses
            if payload.category == "activity_ready" and not doc.get("activity_ready_on"):
                doc["activity_ready_on"] = on.isoformat()
            if payload.category == "education_ready" and doc.get("activity_ready_on"):
                doc.setdefault("education_ready_on", on.isoformat())
        elif isinstance(payload, ev.StarRecorded):
            self._star(state, doc, payload.scores)
            doc.setdefault("measurements", []).extend(
                [on.isoformat(), "star", area, score] for area, score in sorted(payload.scores.items())
            )
        elif isinstance(payload, ev.Who5Recorded):
            self._who5(state, doc, sum(payload.items) * 4)
            doc.setdefault("measurements", []).append([on.isoformat(), "who5", None, sum(payload.items)])
        elif isinstance(payload, ev.GoalAdded):
            doc.setdefault("goals", {})[payload.goal_id] = payload.life_area
            state.incr_many([measures(p, f) for f in families(doc)], {f"goal|{payload.life_area}|set": 1})
        elif isinstance(payload, ev.GoalAchieved | ev.GoalDropped):
            outcome = "achieved" if isinstance(payload, ev.GoalAchieved) else "dropped"
            state.incr_many(
                [measures(p, f) for f in families(doc)], {f"goal|{doc['goals'][payload.goal_id]}|{outcome}": 1}
            )
        elif isinstance(payload, ev.CourseClosed):
            self._move(state, doc, doc["status"], f"closed:{payload.reason}", on)
            doc["closed_on"], doc["close_reason"] = on.isoformat(), payload.reason
            self._void_phases_after(state, doc, on)
            method, series = doc["method"], course_deltas(p)
            add_on(state, series, f"{method}|closed", on, 1)
            add_on(state, series, f"{method}|closed_days", on, (on - date.fromisoformat(doc["enrolled_on"])).days)
            if payload.reason == "completed":
                add_on(state, series, f"{method}|completed", on, 1)
            doc["discharged_early"] = discharged_early(payload, on)
            if doc["discharged_early"]:
                add_on(state, series, f"{method}|early_discharges", on, 1)

    @staticmethod
    def _star(state: ProjectionState, doc: dict[str, Any], scores: dict[str, int]) -> None:
        """Keep each area's first and latest score; counters move by the difference when the latest changes."""
        stars, changes = doc.setdefault("stars", {}), Counter[str]()
        for area, score in scores.items():
            if area not in stars:
                stars[area] = [score, score]
                changes.update({f"star|{area}|n": 1, f"star|{area}|first_sum": score, f"latest|{area}|{score}": 1})
                changes[f"star|{area}|latest_sum"] += score
                continue
            first, old, *again = stars[area]
            stars[area] = [first, score, 1]  # measured again: only such courses can show an improvement
            if not again:
                changes[f"star|{area}|again"] += 1
            changes[f"star|{area}|latest_sum"] += score - old
            changes[f"latest|{area}|{old}"] -= 1
            changes[f"latest|{area}|{score}"] += 1
            changes[f"star|{area}|improved"] += int(score > first) - int(old > first)
        state.incr_many([measures(doc["programme_id"], f) for f in families(doc)], changes)

    @staticmethod
    def _who5(state: ProjectionState, doc: dict[str, Any], percentage: int) -> None:
        def flags(first: int, latest: int) -> dict[str, int]:
            return {
                "le50": int(latest <= 50),
                "le28": int(latest <= 28),
                "changed10": int(abs(latest - first) >= 10),
                "improved10": int(latest - first >= 10),
            }

        if "who5" not in doc:
            doc["who5"] = [percentage, percentage]
            changes = {"who5|n": 1, "who5|first_sum": percentage, "who5|latest_sum": percentage}
            changes |= {f"who5|{name}": value for name, value in flags(percentage, percentage).items()}
        else:
            first, old, *again = doc["who5"]
            doc["who5"] = [first, percentage, 1]
            before, after = flags(first, old), flags(first, percentage)
            changes = {"who5|latest_sum": percentage - old, "who5|again": 0 if again else 1}
            changes |= {f"who5|{name}": after[name] - before[name] for name in after}
        state.incr_many([measures(doc["programme_id"], f) for f in families(doc)], changes)

    @staticmethod
    def _move(state: ProjectionState, doc: dict[str, Any], old: str | None, new: str, on: date) -> None:
        for family in families(doc):
            series = status_deltas(doc["programme_id"], family)
            # A course joins its method's family when it enrols: there it starts, not moves.
            if old is not None and not (family.startswith("method:") and new == "enrolled"):
                add_on(state, series, old, on, -1)
            add_on(state, series, new, on, 1)
        doc["status"] = new
        doc.setdefault("moves", []).append([on.isoformat(), new])


def _phase_steps(phases: list[list[Any]]) -> Counter[tuple[str, str]]:
    """A course's place in the phase sums: +1 to each phase on the day it entered it, -1 on the day it moved on."""
    steps = Counter[tuple[str, str]]()
    for i, (on, phase, _) in enumerate(phases):
        steps[(on, phase)] += 1
        if i:
            steps[(on, phases[i - 1][1])] -= 1
    return steps


def _month(day: date) -> str:
    return day.isoformat()[:7]
