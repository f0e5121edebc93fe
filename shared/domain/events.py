"""The domain's events: what happened, in the domain's words. Streams: ``programme-*``, ``case-*``, ``caseload-*``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from shared.events import DomainEvent

# -- programme-<id> ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgrammeDefined(DomainEvent):
    name: str
    methods: tuple[str, ...]
    course_months: int
    phases: tuple[tuple[str, int], ...]  # (phase, months), in order; e.g. pre_cti, phase_1..3
    recruitment_start: date
    recruitment_end: date
    funding_end: date
    caseload_limit: int
    assessment_interval_months: int
    scale_areas: tuple[str, ...]
    scale_min: int
    scale_max: int
    purposes: tuple[str, ...]
    targets: dict[str, int]  # courses per method


@dataclass(frozen=True)
class ProgrammeChanged(DomainEvent):
    """Only the fields given change (e.g. a funding extension)."""

    recruitment_start: date | None = None
    recruitment_end: date | None = None
    funding_end: date | None = None
    caseload_limit: int | None = None


@dataclass(frozen=True)
class WorkerJoined(DomainEvent):
    """A relation worker joins the programme."""

    worker_id: str
    method: str
    capacity: int | None = None  # None: the programme's caseload limit


@dataclass(frozen=True)
class WorkerCapacityChanged(DomainEvent):
    worker_id: str
    capacity: int | None


# -- case-<id>: the referral and the course that may follow ------------------------------------------

SELF_REFERRAL = "self"  # the source of a citizen's own contact: never a partner's id


@dataclass(frozen=True)
class ReferralReceived(DomainEvent):
    """A contact ("henvendelse"): a partner, or the citizen, refers a citizen to a programme."""

    programme_id: str
    source: str  # the referring partner's id, or SELF_REFERRAL
    consent_given: bool
    citizen_id: str | None = None  # one citizen across referrals (None only in v1 events: the case is its own)
    citizen_alias: str | None = None  # sealed with the citizen's key
    birth_date: str | None = None  # sealed ISO date
    age_band: str | None = None  # at referral: under_18, 18_24, 25_plus; anonymous, so it survives erasure
    cpr_fingerprint: str | None = None  # HMAC of the CPR number; the number itself is never stored
    match_key: str | None = None  # HMAC of alias + birth date, to propose matches without a CPR number
    reopened_from: str | None = None  # the earlier, closed course of the same citizen


@dataclass(frozen=True)
class AssessmentStarted(DomainEvent):
    """The citizen is "i afklaring": talks to clarify what they want. The referral is accepted."""


@dataclass(frozen=True)
class ReferralDeclined(DomainEvent):
    reason: str


@dataclass(frozen=True)
class ReferralWithdrawn(DomainEvent):
    reason: str


@dataclass(frozen=True)
class ReferredOn(DomainEvent):
    """The citizen is referred on to another service instead of a course here."""

    to: str


@dataclass(frozen=True)
class StarRecorded(DomainEvent):
    """An Outcomes Star-style assessment: one score per area on the programme's scale (partial allowed)."""

    scores: dict[str, int]


@dataclass(frozen=True)
class CitizenEnrolled(DomainEvent):
    """Recorded with the first star ("indskrevet"); its date is the star's date."""

    method: str
    first_phase: str | None  # the phase plan's first phase for a CTI course; None for ICM and ACT (no phases)


@dataclass(frozen=True)
class PhaseEntered(DomainEvent):
    phase: str
    reason: str
    scheduled: bool  # True when the plan moved it; False for a worker's explicit early or late move


@dataclass(frozen=True)
class Who5Recorded(DomainEvent):
    items: tuple[int, ...]  # five items, 0-5 each


@dataclass(frozen=True)
class PurposeRecorded(DomainEvent):
    purpose: str


@dataclass(frozen=True)
class GoalAdded(DomainEvent):
    goal_id: str
    life_area: str
    description: str


@dataclass(frozen=True)
class GoalUpdated(DomainEvent):
    goal_id: str
    description: str


@dataclass(frozen=True)
class GoalAchieved(DomainEvent):
    goal_id: str


@dataclass(frozen=True)
class GoalDropped(DomainEvent):
    goal_id: str


@dataclass(frozen=True)
class ContactRecorded(DomainEvent):
    kind: str  # see CONTACT_KINDS


@dataclass(frozen=True)
class HousingChanged(DomainEvent):
    situation: str  # see HOUSING_SITUATIONS


@dataclass(frozen=True)
class AddictionTreatmentChanged(DomainEvent):
    in_treatment: bool


@dataclass(frozen=True)
class JobCentreCategoryChanged(DomainEvent):
    category: str  # e.g. activity_ready, education_ready, job_ready


@dataclass(frozen=True)
class CourseClosed(DomainEvent):
    reason: str  # see CLOSE_REASONS
    # The course's planned end as the programme had it when the closure was decided: closed before it, the
    # course was discharged early, whatever the funding end became later. None in closures recorded before v2.
    planned_end: date | None = None


@dataclass(frozen=True)
class CourseReopened(DomainEvent):
    """On the closed course: the citizen's new course continues in another stream."""

    new_case_id: str


# -- caseload-<programme>: who works with whom, and who waits ----------------------------------------


@dataclass(frozen=True)
class CaseAssigned(DomainEvent):
    case_id: str
    worker_id: str
    via: str  # "request", or "waitlist" when a freed slot was offered to the longest-waiting citizen


@dataclass(frozen=True)
class CaseReleased(DomainEvent):
    case_id: str
    worker_id: str
    reason: str  # "reassigned", "course_closed"


@dataclass(frozen=True)
class CaseWaitlisted(DomainEvent):
    case_id: str
    method: str | None = None  # of the worker asked for: the citizen waits for a slot of it (None in v1: any slot)


@dataclass(frozen=True)
class WaitingForChanged(DomainEvent):
    """A waitlisted citizen now waits for a slot of another method (keeping their place): their course enrolled
    in it, or the coordinator asked for a full worker of it."""

    case_id: str
    method: str


@dataclass(frozen=True)
class CaseLeftWaitlist(DomainEvent):
    case_id: str
    reason: str


# -- partner-<id>: partners and their API keys --------------------------------------------------------


@dataclass(frozen=True)
class PartnerRegistered(DomainEvent):
    name: str
    kind: str  # municipality, ngo, other


@dataclass(frozen=True)
class ApiKeyIssued(DomainEvent):
    key_id: str
    secret_hash: str  # SHA-256 of the secret; the key itself was shown once and never stored
    role: str
    programme_id: str | None
    worker_id: str | None
    label: str


@dataclass(frozen=True)
class ApiKeyRevoked(DomainEvent):
    key_id: str


# -- citizens: cpr-<fingerprint>, citizen-<id>, identity-<programme> ------------------------------------


@dataclass(frozen=True)
class CprLinked(DomainEvent):
    """On ``cpr-<fingerprint>``: referrals with this CPR number belong to this citizen (the latest link wins).
    Appended with every referral that gives the number, a known one too (see ``Intake.refer``)."""

    citizen_id: str


@dataclass(frozen=True)
class CitizenErased(DomainEvent):
    """The citizen's key is deleted: their personal data is unreadable everywhere. The actor is who did it."""

    requested_by: str  # citizen, representative, municipality


@dataclass(frozen=True)
class MatchConfirmed(DomainEvent):
    """A coordinator confirmed that two citizen records (without CPR numbers) are one person."""

    citizen_a: str
    citizen_b: str


@dataclass(frozen=True)
class MatchRejected(DomainEvent):
    """A coordinator rejected a proposed match; it is not proposed again."""

    citizen_a: str
    citizen_b: str
