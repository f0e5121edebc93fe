"""The domain's events: what happened to a citizen's course, in the domain's words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from shared.events import DomainEvent


@dataclass(frozen=True)
class ReferralReceived(DomainEvent):
    """A contact ("henvendelse"): a partner, or the citizen, refers a citizen to a programme."""

    programme_id: str
    source: str  # the referring partner's id, or "self"
    consent_given: bool
    citizen_alias: str | None = None
    cpr_fingerprint: str | None = None  # HMAC of the CPR number; the number itself is never stored
    birth_date: date | None = None


@dataclass(frozen=True)
class AssessmentStarted(DomainEvent):
    """The citizen is "i afklaring": talks to clarify what they want."""


@dataclass(frozen=True)
class ReferralDeclined(DomainEvent):
    reason: str


@dataclass(frozen=True)
class ReferralWithdrawn(DomainEvent):
    reason: str
