"""A citizen's case: the referral and the course that may follow, as a pure fold over events.

``evolve`` rebuilds state from events (intake folds a case before deciding; the
caseflow projection folds it into a read model). The ``decide_*`` functions
refuse what the lifecycle does not allow, with a machine-readable code
(``Refused``: HTTP 409) or per-field messages (``Invalid``: HTTP 422), instead
of accepting an event that would later be ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum
from typing import Any

from shared.domain import events as ev
from shared.domain.programme import DANISH_LIFE_AREAS, PHASED_METHODS, Programme, course_dates, due_phase_moves
from shared.events import DomainEvent

CONTACT_KINDS = ("community_meeting", "home_visit", "phone", "provider_meeting", "informal_support_meeting")
HOUSING_SITUATIONS = ("homeless", "temporary", "permanent", "lost")
CLOSE_REASONS = ("completed", "dropped_out", "moved", "referred_on", "funding_ended")
JOB_CENTRE_CATEGORIES = ("job_ready", "education_ready", "activity_ready")


class CaseStatus(StrEnum):
    REFERRED = "referred"
    IN_ASSESSMENT = "in_assessment"
    ENROLLED = "enrolled"
    CLOSED = "closed"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"
    REFERRED_ON = "referred_on"

    @property
    def is_open(self) -> bool:
        return self in (CaseStatus.REFERRED, CaseStatus.IN_ASSESSMENT, CaseStatus.ENROLLED)


DANISH_STATUS = {
    CaseStatus.REFERRED: "henvendelse",
    CaseStatus.IN_ASSESSMENT: "i afklaring",
    CaseStatus.ENROLLED: "indskrevet",
    CaseStatus.CLOSED: "afsluttet",
    CaseStatus.DECLINED: "afvist",
    CaseStatus.WITHDRAWN: "trukket tilbage",
    CaseStatus.REFERRED_ON: "henvist videre",
}


class Refused(Exception):
    """A command the case's state does not allow. Intake answers it with 409."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Invalid(Exception):
    """Values the programme's configuration does not allow (e.g. a score off its scale). HTTP 422."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("invalid fields")
        self.fields = fields


@dataclass(frozen=True)
class StatusChange:
    on: date
    status: CaseStatus


@dataclass(frozen=True)
class PhaseChange:
    on: date
    phase: str
    reason: str
    scheduled: bool


@dataclass(frozen=True)
class Goal:
    goal_id: str
    life_area: str
    description: str
    added_on: date
    status: str = "open"  # open, achieved, dropped
    closed_on: date | None = None


@dataclass(frozen=True)
class Case:
    case_id: str
    programme_id: str
    source: str
    referred_on: date
    consent_given: bool
    status: CaseStatus
    history: tuple[StatusChange, ...]
    version: int  # number of events applied: the expected version for the next append
    citizen_id: str = ""  # one citizen across referrals and reopened courses
    citizen_alias: str | None = None  # sealed (shared.vault)
    age_band: str | None = None  # at referral
    match_key: str | None = None
    outcome_reason: str | None = None  # why declined/withdrawn/closed (sealed), or where referred on to
    reopened_from: str | None = None
    reopened_as: str | None = None
    method: str | None = None
    enrolled_on: date | None = None
    closed_on: date | None = None
    phases: tuple[PhaseChange, ...] = ()
    stars: tuple[tuple[date, dict[str, int]], ...] = ()
    who5: tuple[tuple[date, tuple[int, ...]], ...] = ()
    purposes: tuple[tuple[date, str], ...] = ()
    goals: tuple[Goal, ...] = ()
    contacts: tuple[tuple[date, str], ...] = ()
    housing: tuple[tuple[date, str], ...] = ()
    addiction_treatment: tuple[tuple[date, bool], ...] = ()
    job_centre: tuple[tuple[date, str], ...] = ()

    def status_on(self, day: date) -> CaseStatus | None:
        """The status this case had on a given date (None before it was referred)."""
        status: CaseStatus | None = _latest((c.on, c.status) for c in self.history if c.on <= day)
        return status

    def phase_on(self, day: date) -> str | None:
        """Which phase the course was in on a date (None before enrolment)."""
        phase: str | None = _latest((p.on, p.phase) for p in self.phases if p.on <= day)
        return phase

    @property
    def phase(self) -> str | None:
        return self.phases[-1].phase if self.phases else None

    @property
    def last_star_on(self) -> date | None:
        return self.stars[-1][0] if self.stars else None

    def goal(self, goal_id: str) -> Goal | None:
        return next((g for g in self.goals if g.goal_id == goal_id), None)

    def next_goal_id(self) -> str:
        """The first free ``goal-N``: a goal given its own id may have taken the next number."""
        taken, n = {g.goal_id for g in self.goals}, len(self.goals) + 1
        while f"goal-{n}" in taken:
            n += 1
        return f"goal-{n}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for read models and API answers."""
        return {
            "case_id": self.case_id,
            "programme_id": self.programme_id,
            "source": self.source,
            "referred_on": self.referred_on.isoformat(),
            "consent_given": self.consent_given,
            "status": self.status.value,
            "status_da": DANISH_STATUS[self.status],
            "outcome_reason": self.outcome_reason,
            "history": [{"on": c.on.isoformat(), "status": c.status.value} for c in self.history],
            "version": self.version,
            "citizen_id": self.citizen_id,
            "citizen_alias": self.citizen_alias,
            "age_band": self.age_band,
            "match_key": self.match_key,
            "reopened_from": self.reopened_from,
            "reopened_as": self.reopened_as,
            "method": self.method,
            "enrolled_on": _iso(self.enrolled_on),
            "closed_on": _iso(self.closed_on),
            "phases": [
                {"on": p.on.isoformat(), "phase": p.phase, "reason": p.reason, "scheduled": p.scheduled}
                for p in self.phases
            ],
            "stars": [{"on": on.isoformat(), "scores": scores} for on, scores in self.stars],
            "who5": [{"on": on.isoformat(), "items": list(items)} for on, items in self.who5],
            "purposes": _dated(self.purposes, "purpose"),
            "goals": [
                {
                    "goal_id": g.goal_id,
                    "life_area": g.life_area,
                    "description": g.description,
                    "added_on": g.added_on.isoformat(),
                    "status": g.status,
                    "closed_on": _iso(g.closed_on),
                }
                for g in self.goals
            ],
            "contacts": _dated(self.contacts, "kind"),
            "housing": _dated(self.housing, "situation"),
            "addiction_treatment": _dated(self.addiction_treatment, "in_treatment"),
            "job_centre": _dated(self.job_centre, "category"),
        }

    @classmethod
    def from_stored(cls, d: dict[str, Any]) -> Case:
        """A case from its stored form: the read model stores the dataclass as orjson writes it natively (fields
        in order, dates as ISO strings, tuples as arrays, enums as their values), ten times faster than
        ``to_dict`` and orjson, which a projection would pay on every document it writes."""
        return cls(
            case_id=d["case_id"],
            programme_id=d["programme_id"],
            source=d["source"],
            referred_on=date.fromisoformat(d["referred_on"]),
            consent_given=d["consent_given"],
            status=CaseStatus(d["status"]),
            history=tuple(StatusChange(date.fromisoformat(c["on"]), CaseStatus(c["status"])) for c in d["history"]),
            version=d["version"],
            citizen_id=d["citizen_id"],
            citizen_alias=d["citizen_alias"],
            age_band=d["age_band"],
            match_key=d["match_key"],
            outcome_reason=d["outcome_reason"],
            reopened_from=d["reopened_from"],
            reopened_as=d["reopened_as"],
            method=d["method"],
            enrolled_on=_date(d["enrolled_on"]),
            closed_on=_date(d["closed_on"]),
            phases=tuple(
                PhaseChange(date.fromisoformat(p["on"]), p["phase"], p["reason"], p["scheduled"]) for p in d["phases"]
            ),
            stars=_undated(d["stars"]),
            who5=tuple((date.fromisoformat(on), tuple(items)) for on, items in d["who5"]),
            purposes=_undated(d["purposes"]),
            goals=tuple(
                Goal(
                    g["goal_id"],
                    g["life_area"],
                    g["description"],
                    date.fromisoformat(g["added_on"]),
                    g["status"],
                    _date(g["closed_on"]),
                )
                for g in d["goals"]
            ),
            contacts=_undated(d["contacts"]),
            housing=_undated(d["housing"]),
            addiction_treatment=_undated(d["addiction_treatment"]),
            job_centre=_undated(d["job_centre"]),
        )


def _latest(dated: Any) -> Any:
    current = None
    for _, value in dated:
        current = value
    return current


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _date(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def _dated(pairs: tuple[tuple[date, Any], ...], name: str) -> list[dict[str, Any]]:
    return [{"on": on.isoformat(), name: value} for on, value in pairs]


def _undated(pairs: list[list[Any]]) -> tuple[tuple[date, Any], ...]:
    return tuple((date.fromisoformat(on), value) for on, value in pairs)


# -- evolve ---------------------------------------------------------------------------------------------


def evolve(case: Case | None, case_id: str, event: DomainEvent, on: date) -> Case:
    """Apply one event. Raises on an event that cannot start or continue a case (a corrupt log)."""
    if case is None:
        if not isinstance(event, ev.ReferralReceived):
            raise ValueError(f"case {case_id} must start with ReferralReceived, not {type(event).__name__}")
        return Case(
            case_id=case_id,
            programme_id=event.programme_id,
            source=event.source,
            referred_on=on,
            consent_given=event.consent_given,
            status=CaseStatus.REFERRED,
            history=(StatusChange(on, CaseStatus.REFERRED),),
            version=1,
            citizen_id=event.citizen_id or case_id,
            citizen_alias=event.citizen_alias,
            age_band=event.age_band,
            match_key=event.match_key,
            reopened_from=event.reopened_from,
        )
    rule = _RULES.get(type(event))
    if rule is None:
        raise ValueError(f"case {case_id}: no rule for {type(event).__name__}")
    return _updated(case, rule(case, event, on))


def _updated(case: Case, changes: dict[str, Any]) -> Case:
    """``dataclasses.replace`` without re-running ``__init__``, which for a frozen class of two dozen fields
    was the fold's largest cost (~35 us per event). Case has no ``__post_init__`` and no cached values, so
    copying its fields and setting those that change (and the version) is the same thing."""
    fields = case.__dict__.copy()  # a copy of a whole dict is several times faster than adding its entries
    fields.update(changes)
    fields["version"] = case.version + 1
    updated = object.__new__(Case)
    object.__setattr__(updated, "__dict__", fields)
    return updated


# The fields each event changes in a case, applied by ``evolve`` in one copy. A table by event type rather than
# one ``match``: a match tries its cases in turn, and the fold runs a million times in a rebuild.
Changes = dict[str, Any]
Rule = Callable[[Case, Any, date], Changes]  # (the case, an event of the types it is registered for, its date)
_RULES: dict[type[DomainEvent], Rule] = {}


def _rule(*event_types: type[DomainEvent]) -> Callable[[Rule], Rule]:
    def register(changes: Rule) -> Rule:
        _RULES.update(dict.fromkeys(event_types, changes))
        return changes

    return register


@_rule(ev.AssessmentStarted)
def _assessed(case: Case, event: ev.AssessmentStarted, on: date) -> Changes:
    return _moved(case, CaseStatus.IN_ASSESSMENT, on)


@_rule(ev.ReferralDeclined, ev.ReferralWithdrawn)
def _declined_or_withdrawn(case: Case, event: ev.ReferralDeclined | ev.ReferralWithdrawn, on: date) -> Changes:
    status = CaseStatus.DECLINED if isinstance(event, ev.ReferralDeclined) else CaseStatus.WITHDRAWN
    return _moved(case, status, on) | {"outcome_reason": event.reason}


@_rule(ev.ReferredOn)
def _referred_on(case: Case, event: ev.ReferredOn, on: date) -> Changes:
    return _moved(case, CaseStatus.REFERRED_ON, on) | {"outcome_reason": event.to}


@_rule(ev.StarRecorded)
def _star(case: Case, event: ev.StarRecorded, on: date) -> Changes:
    return {"stars": (*case.stars, (on, dict(event.scores)))}


@_rule(ev.CitizenEnrolled)
def _enrolled(case: Case, event: ev.CitizenEnrolled, on: date) -> Changes:
    phase = event.first_phase
    return _moved(case, CaseStatus.ENROLLED, on) | {
        "method": event.method,
        "enrolled_on": on,
        "phases": (PhaseChange(on, phase, "enrolment", True),) if phase else (),
    }


@_rule(ev.PhaseEntered)
def _phase(case: Case, event: ev.PhaseEntered, on: date) -> Changes:
    # A course with no phase plan (ICM, ACT) has no phases: moves an older scheduler appended to one did not
    # happen (see the CitizenEnrolled upcaster).
    if not case.phases:
        return {}
    return {"phases": (*case.phases, PhaseChange(on, event.phase, event.reason, event.scheduled))}


@_rule(ev.Who5Recorded)
def _who5(case: Case, event: ev.Who5Recorded, on: date) -> Changes:
    return {"who5": (*case.who5, (on, tuple(event.items)))}


@_rule(ev.PurposeRecorded)
def _purpose(case: Case, event: ev.PurposeRecorded, on: date) -> Changes:
    return {"purposes": (*case.purposes, (on, event.purpose))}


@_rule(ev.GoalAdded)
def _goal_added(case: Case, event: ev.GoalAdded, on: date) -> Changes:
    return {"goals": (*case.goals, Goal(event.goal_id, event.life_area, event.description, on))}


@_rule(ev.GoalUpdated)
def _goal_updated(case: Case, event: ev.GoalUpdated, on: date) -> Changes:
    return _goal(case, event.goal_id, description=event.description)


@_rule(ev.GoalAchieved)
def _goal_achieved(case: Case, event: ev.GoalAchieved, on: date) -> Changes:
    return _goal(case, event.goal_id, status="achieved", closed_on=on)


@_rule(ev.GoalDropped)
def _goal_dropped(case: Case, event: ev.GoalDropped, on: date) -> Changes:
    return _goal(case, event.goal_id, status="dropped", closed_on=on)


@_rule(ev.ContactRecorded)
def _contact(case: Case, event: ev.ContactRecorded, on: date) -> Changes:
    return {"contacts": (*case.contacts, (on, event.kind))}


@_rule(ev.HousingChanged)
def _housing(case: Case, event: ev.HousingChanged, on: date) -> Changes:
    return {"housing": (*case.housing, (on, event.situation))}


@_rule(ev.AddictionTreatmentChanged)
def _treatment(case: Case, event: ev.AddictionTreatmentChanged, on: date) -> Changes:
    return {"addiction_treatment": (*case.addiction_treatment, (on, event.in_treatment))}


@_rule(ev.JobCentreCategoryChanged)
def _job_centre(case: Case, event: ev.JobCentreCategoryChanged, on: date) -> Changes:
    return {"job_centre": (*case.job_centre, (on, event.category))}


@_rule(ev.CourseClosed)
def _closed(case: Case, event: ev.CourseClosed, on: date) -> Changes:
    return _moved(case, CaseStatus.CLOSED, on) | {
        "outcome_reason": event.reason,
        "closed_on": on,
        "phases": phases_until(case.phases, on),
    }


@_rule(ev.CourseReopened)
def _reopened(case: Case, event: ev.CourseReopened, on: date) -> Changes:
    return {"reopened_as": event.new_case_id}


def _moved(case: Case, status: CaseStatus, on: date) -> dict[str, Any]:
    return {"status": status, "history": (*case.history, StatusChange(on, status))}


def _goal(case: Case, goal_id: str, **changes: Any) -> dict[str, Any]:
    return {"goals": tuple(replace(g, **changes) if g.goal_id == goal_id else g for g in case.goals)}


# -- decide ---------------------------------------------------------------------------------------------


def _require(case: Case, on: date, *allowed: CaseStatus, action: str) -> None:
    if case.status not in allowed:
        if not case.status.is_open:
            raise Refused("case_closed", f"cannot {action}: the case is already {case.status.value}")
        names = " or ".join(s.value for s in allowed)
        raise Refused(f"not_{allowed[0].value}", f"cannot {action}: the case is {case.status.value}, not {names}")
    if on < case.referred_on:
        raise Refused("date_before_referral", f"{on.isoformat()} is before the referral date")


def _require_after_last_change(case: Case, on: date) -> None:
    """Status changes come in date order, so "the status on date D" has one answer."""
    if on < case.history[-1].on:
        raise Refused(
            "date_before_last_change",
            f"{on.isoformat()} is before the last status change ({case.history[-1].on.isoformat()})",
        )


REFERRAL_STAGE = (CaseStatus.REFERRED, CaseStatus.IN_ASSESSMENT)
OPEN = (CaseStatus.REFERRED, CaseStatus.IN_ASSESSMENT, CaseStatus.ENROLLED)


def decide_start_assessment(case: Case, on: date) -> ev.AssessmentStarted:
    if case.status is CaseStatus.IN_ASSESSMENT:
        raise Refused("already_in_assessment", "the citizen is already in assessment")
    _require(case, on, CaseStatus.REFERRED, action="start an assessment")
    _require_after_last_change(case, on)
    return ev.AssessmentStarted()


def decide_decline(case: Case, reason: str, on: date) -> ev.ReferralDeclined:
    _require(case, on, *REFERRAL_STAGE, action="decline")
    _require_after_last_change(case, on)
    return ev.ReferralDeclined(reason=reason)


def decide_withdraw(case: Case, reason: str, on: date) -> ev.ReferralWithdrawn:
    _require(case, on, *REFERRAL_STAGE, action="withdraw")
    _require_after_last_change(case, on)
    return ev.ReferralWithdrawn(reason=reason)


def decide_refer_on(case: Case, to: str, on: date) -> ev.ReferredOn:
    _require(case, on, *REFERRAL_STAGE, action="refer on (an enrolled course closes with reason referred_on)")
    _require_after_last_change(case, on)
    return ev.ReferredOn(to=to)


def check_scores(programme: Programme, scores: dict[str, int]) -> None:
    problems = {}
    for area, score in scores.items():
        if area not in programme.scale_areas:
            problems[f"scores.{area}"] = [f"not an area of this programme's scale: {', '.join(programme.scale_areas)}"]
        elif not programme.scale_min <= score <= programme.scale_max:
            problems[f"scores.{area}"] = [f"must be between {programme.scale_min} and {programme.scale_max}"]
    if not scores:
        problems["scores"] = ["score at least one area"]
    if problems:
        raise Invalid(problems)


def decide_star(
    case: Case,
    programme: Programme,
    scores: dict[str, int],
    on: date,
    method: str | None,
    must_enrol: bool,
    assigned_method: str | None = None,
    waited_for: str | None = None,
) -> list[DomainEvent]:
    """A star. The first one, recorded in assessment, enrols the citizen on its date, in the method asked for, else
    that of the relation worker the case is assigned to (``assigned_method``), else the one whose slot the citizen
    waits for on the waitlist (``waited_for``), else the programme's first that a worker works with. Once the
    programme has workers, not in a method none of them works with."""
    if must_enrol and case.status is CaseStatus.ENROLLED:
        raise Refused("already_enrolled", f"the citizen was enrolled on {_iso(case.enrolled_on)}")
    _require(case, on, CaseStatus.IN_ASSESSMENT, CaseStatus.ENROLLED, action="record a star")
    check_scores(programme, scores)
    if case.status is CaseStatus.ENROLLED:
        if case.enrolled_on and on < case.enrolled_on:
            raise Refused("date_before_enrolment", f"{on.isoformat()} is before the enrolment date")
        _require_after_last(case.stars, on, "star")
        return [ev.StarRecorded(scores=scores)]
    if not case.consent_given:
        raise Refused("no_consent", "the citizen's consent is not recorded: a course cannot start")
    _require_after_last_change(case, on)
    if not programme.in_recruitment_window(on):
        raise Refused(
            "outside_recruitment_window",
            f"enrolment on {on.isoformat()} is outside the recruitment window "
            f"{programme.recruitment_start.isoformat()} to {programme.recruitment_end.isoformat()}",
        )
    staffed = [m for m in programme.methods if any(w.method == m for w in programme.workers.values())]
    method = method or assigned_method or waited_for or (staffed or programme.methods)[0]
    if method not in programme.methods:
        raise Invalid({"method": [f"this programme offers {', '.join(programme.methods)}"]})
    if programme.workers and method not in staffed:  # a course no relation worker could ever take on
        raise Refused("no_worker_of_method", f"no relation worker of this programme works with {method.upper()}")
    if assigned_method is not None and method != assigned_method:
        raise Refused(
            "method_mismatch",
            f"the citizen's relation worker works with {assigned_method.upper()}: reassign the case to a worker of "
            f"{method.upper()} first",
        )
    first_phase = programme.phases[0].name if method in PHASED_METHODS else None
    # Enrolment first, so whatever follows the course (reports by method) knows its method at the first star.
    return [ev.CitizenEnrolled(method=method, first_phase=first_phase), ev.StarRecorded(scores=scores)]


def _require_after_last(series: tuple[tuple[date, Any], ...], on: date, what: str) -> None:
    """Measurements and situations come in date order, as status changes do: the last recorded is the latest,
    which is what reports take as a course's current score or situation (one recorded later with an earlier
    date would be taken as the newest)."""
    require_in_date_order(series[-1][0] if series else None, on, what)


def require_in_date_order(last: date | None, on: date, what: str) -> None:
    """Refuse a record dated before the last of its kind (``date_before_last_record``)."""
    if last is not None and on < last:
        raise Refused("date_before_last_record", f"{on.isoformat()} is before the last {what} ({last.isoformat()})")


def require_within_funding(case: Case, programme: Programme, on: date, earliest_closure: date | None = None) -> None:
    """The programme's funding end is a course's last day ("no course may run past it", DOMAIN.md): nothing is
    recorded on a course after it, so a course it cuts short is closed on it (reason ``funding_ended``, which
    ``decide_close`` takes on no earlier day) or before it for another reason. A referral not yet enrolled is not
    a course: its outcome is still recorded.

    ``earliest_closure``, for a closure: the first day the closure's other rules allow. A funding end moved back
    before a course's records (a cut) leaves it that day, not a course that can never be closed."""
    last_day = max(programme.funding_end, earliest_closure) if earliest_closure else programme.funding_end
    if case.enrolled_on is not None and on > last_day:
        raise Refused(
            "after_funding_end",
            f"the programme's funding ended on {programme.funding_end.isoformat()} and no course runs past it: "
            "date the record on or before it",
        )


def _require_enrolled(case: Case, on: date, action: str) -> None:
    _require(case, on, CaseStatus.ENROLLED, action=action)
    if case.enrolled_on and on < case.enrolled_on:
        raise Refused("date_before_enrolment", f"{on.isoformat()} is before the enrolment date")


def decide_who5(case: Case, items: tuple[int, ...], on: date) -> ev.Who5Recorded:
    _require_enrolled(case, on, "record WHO-5")
    _require_after_last(case.who5, on, "WHO-5")
    return ev.Who5Recorded(items=items)


def decide_purpose(case: Case, programme: Programme, purpose: str, on: date) -> ev.PurposeRecorded:
    _require_enrolled(case, on, "record the purpose")
    if purpose not in programme.purposes:
        raise Invalid({"purpose": [f"one of: {', '.join(programme.purposes)}"]})
    return ev.PurposeRecorded(purpose=purpose)


def decide_add_goal(
    case: Case, programme: Programme, goal_id: str, life_area: str, description: str, on: date
) -> ev.GoalAdded:
    _require_enrolled(case, on, "add a goal")
    if life_area not in DANISH_LIFE_AREAS + programme.scale_areas:
        raise Invalid({"life_area": [f"one of: {', '.join(DANISH_LIFE_AREAS)}"]})
    if case.goal(goal_id):
        raise Refused("goal_exists", f"goal {goal_id} already exists")
    return ev.GoalAdded(goal_id=goal_id, life_area=life_area, description=description)


def decide_goal_change(case: Case, goal_id: str, change: str, description: str | None, on: date) -> DomainEvent:
    _require_enrolled(case, on, f"{change} a goal")
    goal = case.goal(goal_id)
    if goal is None:
        raise Refused("unknown_goal", f"the activity plan has no goal {goal_id}")
    if goal.status != "open":
        raise Refused("goal_closed", f"goal {goal_id} is already {goal.status}")
    if change == "update":
        if not description:
            raise Invalid({"description": ["a new description is required to update a goal"]})
        return ev.GoalUpdated(goal_id=goal_id, description=description)
    return ev.GoalAchieved(goal_id=goal_id) if change == "achieve" else ev.GoalDropped(goal_id=goal_id)


def decide_situation(case: Case, event: DomainEvent, on: date) -> DomainEvent:
    """Contacts, housing, addiction treatment and job-centre category: recorded while the case is open (all but
    contacts in date order)."""
    _require(case, on, *OPEN, action="record this")
    if isinstance(event, ev.HousingChanged):
        _require_after_last(case.housing, on, "housing situation")
    elif isinstance(event, ev.AddictionTreatmentChanged):
        _require_after_last(case.addiction_treatment, on, "addiction treatment record")
    elif isinstance(event, ev.JobCentreCategoryChanged):
        _require_after_last(case.job_centre, on, "job-centre category")
    return event


def decide_phase(case: Case, programme: Programme, phase: str, reason: str, on: date) -> ev.PhaseEntered:
    """A worker's explicit (early or late) phase move."""
    _require_enrolled(case, on, "move the phase")
    if not case.phases:
        method = (case.method or "").upper()
        raise Refused("no_phase_plan", f"an {method} course has no phases: only CTI runs in phases")
    names = programme.phase_names()
    if phase not in names:
        raise Invalid({"phase": [f"one of: {', '.join(names)}"]})
    if phase == case.phase:
        raise Refused("same_phase", f"the course is already in {phase}")
    if case.phase in names and names.index(phase) < names.index(case.phase):
        # The phases are a sequence (a course "reaches" the last it entered, as reports count it).
        raise Refused("phase_before_current", f"the course is in {case.phase}, past {phase}")
    if on < case.phases[-1].on:
        raise Refused("date_before_last_phase", "a phase move cannot be dated before the last one")
    return ev.PhaseEntered(phase=phase, reason=reason, scheduled=False)


def planned_phase_moves(case: Case, programme: Programme, until: date) -> list[tuple[str, date]]:
    """The phase plan's moves still to come in a course, due by ``until``. Counted from the last phase a worker
    entered (or the enrolment's), not from the scheduler's own last move, so the dates are the plan's whichever
    days the scheduler runs (from 31 October 4 and 8 months are 28 February and 30 June; counted from 28
    February, 28 June). None out of pre-CTI: CTI proper starts when the citizen has a home, which a worker
    records by moving the course to phase 1, not on a date."""
    names = programme.phase_names()
    current = case.phase
    if current not in names or current == "pre_cti":  # None before the enrolment
        return []
    anchor = next((p for p in reversed(case.phases) if not p.scheduled), case.phases[0])
    moves = due_phase_moves(programme, anchor.phase, anchor.on, until)
    return [(phase, due) for phase, due in moves if names.index(phase) > names.index(current)]


def earliest_closure(case: Case, last_assignment_change: date | None) -> date:
    """The first day a closure may be dated: not before the last status change, a worker's own phase move, or the
    last change of relation worker or of the waitlist (``decide_close``, ``decide_release``)."""
    dates = [case.history[-1].on, *(p.on for p in case.phases if not p.scheduled)]
    if last_assignment_change is not None:
        dates.append(last_assignment_change)
    return max(dates)


def decide_close(case: Case, programme: Programme, reason: str, on: date) -> ev.CourseClosed:
    _require_enrolled(case, on, "close the course (a referral is declined, withdrawn or referred on)")
    _require_after_last_change(case, on)
    if reason == "funding_ended" and on < programme.funding_end:
        raise Refused(
            "before_funding_end",
            f"the programme's funding ends on {programme.funding_end.isoformat()}: a course closed before it "
            "ended for another reason",
        )
    if moved := [p for p in case.phases if p.on > on and not p.scheduled]:
        raise Refused(
            "date_before_last_phase",
            f"a worker moved the course to {moved[-1].phase} on {moved[-1].on.isoformat()}: "
            "a closure cannot be dated before it",
        )
    return ev.CourseClosed(reason=reason, planned_end=course_dates(programme, case.enrolled_on or on).planned_end)


EARLY_REASONS = ("dropped_out", "moved", "referred_on")  # how closures recorded before v2 are judged


def discharged_early(closure: ev.CourseClosed, closed_on: date) -> bool:
    """CTI fidelity's "no discharge before the course ends" (DOMAIN.md), by date: a course closed before its
    planned end as the closure recorded it, whatever the reason given (one "completed" three weeks in ended
    early too; one that ran its time did not; one closed for the funding end closes on or after it). A closure
    recorded before the planned end was kept with it is judged by its reason, as it was then."""
    if closure.planned_end is None:
        return closure.reason in EARLY_REASONS
    return closed_on < closure.planned_end


def phases_until(phases: tuple[PhaseChange, ...], closed_on: date) -> tuple[PhaseChange, ...]:
    """A course's phases once it closed on ``closed_on``: the scheduler's moves that fell due after that date
    did not happen (the closure is often recorded days after the citizen left, and the phase plan ran on
    meanwhile). A worker's own moves stand: ``decide_close`` refuses a closure dated before one (a log from
    before that rule may hold such a closure, and keeps the move)."""
    return tuple(p for p in phases if not voided_by_closure(p.on, p.scheduled, closed_on))


def voided_by_closure(moved_on: date, scheduled: bool, closed_on: date) -> bool:
    """Whether a phase move did not happen because the course had closed before it fell due."""
    return scheduled and moved_on > closed_on


def decide_reopen(case: Case, on: date) -> None:
    """The new course begins on ``on``: not before the closure, or a report on a date between would count the
    citizen in two courses (or in a course referred before the referral that began it all)."""
    if case.status is not CaseStatus.CLOSED:
        raise Refused("not_closed", f"only a closed course can be reopened; this case is {case.status.value}")
    if case.reopened_as:
        raise Refused("already_reopened", f"this course was already reopened as {case.reopened_as}")
    _require_after_last_change(case, on)
