"""A citizen's case: its lifecycle as a pure fold over events, and the decisions that guard it.

``evolve`` rebuilds state from events (used by intake before deciding, and by
the caseflow projection). The ``decide_*`` functions refuse what the lifecycle
does not allow, with a machine-readable code, instead of accepting an event
that would later be ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum
from typing import Any

from shared.domain.events import AssessmentStarted, ReferralDeclined, ReferralReceived, ReferralWithdrawn
from shared.events import DomainEvent


class CaseStatus(StrEnum):
    REFERRED = "referred"  # henvendelse
    IN_ASSESSMENT = "in_assessment"  # i afklaring
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"

    @property
    def is_open(self) -> bool:
        return self in (CaseStatus.REFERRED, CaseStatus.IN_ASSESSMENT)


DANISH_STATUS = {
    CaseStatus.REFERRED: "henvendelse",
    CaseStatus.IN_ASSESSMENT: "i afklaring",
    CaseStatus.DECLINED: "afvist",
    CaseStatus.WITHDRAWN: "trukket tilbage",
}


class Refused(Exception):
    """A command the case's state does not allow. Intake answers it with 409."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class StatusChange:
    on: date
    status: CaseStatus


@dataclass(frozen=True)
class Case:
    case_id: str
    programme_id: str
    source: str
    referred_on: date
    status: CaseStatus
    history: tuple[StatusChange, ...]
    version: int  # number of events applied: the expected version for the next append
    outcome_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for read models and API answers."""
        return {
            "case_id": self.case_id,
            "programme_id": self.programme_id,
            "source": self.source,
            "referred_on": self.referred_on.isoformat(),
            "status": self.status.value,
            "status_da": DANISH_STATUS[self.status],
            "outcome_reason": self.outcome_reason,
            "history": [{"on": c.on.isoformat(), "status": c.status.value} for c in self.history],
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Case:
        return cls(
            case_id=doc["case_id"],
            programme_id=doc["programme_id"],
            source=doc["source"],
            referred_on=date.fromisoformat(doc["referred_on"]),
            status=CaseStatus(doc["status"]),
            history=tuple(StatusChange(date.fromisoformat(c["on"]), CaseStatus(c["status"])) for c in doc["history"]),
            version=doc["version"],
            outcome_reason=doc["outcome_reason"],
        )

    def status_on(self, day: date) -> CaseStatus | None:
        """The status this case had on a given date (None before it was referred)."""
        current = None
        for change in self.history:
            if change.on > day:
                break
            current = change.status
        return current


def evolve(case: Case | None, case_id: str, event: DomainEvent, on: date) -> Case:
    """Apply one event. Raises on an event that cannot start or continue a case (a corrupt log)."""
    if case is None:
        if not isinstance(event, ReferralReceived):
            raise ValueError(f"case {case_id} must start with ReferralReceived, not {type(event).__name__}")
        return Case(
            case_id=case_id,
            programme_id=event.programme_id,
            source=event.source,
            referred_on=on,
            status=CaseStatus.REFERRED,
            history=(StatusChange(on, CaseStatus.REFERRED),),
            version=1,
        )
    match event:
        case AssessmentStarted():
            return _moved(case, CaseStatus.IN_ASSESSMENT, on)
        case ReferralDeclined(reason=reason):
            return replace(_moved(case, CaseStatus.DECLINED, on), outcome_reason=reason)
        case ReferralWithdrawn(reason=reason):
            return replace(_moved(case, CaseStatus.WITHDRAWN, on), outcome_reason=reason)
    raise ValueError(f"case {case_id}: no rule for {type(event).__name__}")


def _moved(case: Case, status: CaseStatus, on: date) -> Case:
    return replace(case, status=status, history=(*case.history, StatusChange(on, status)), version=case.version + 1)


def _require_open(case: Case, action: str) -> None:
    if not case.status.is_open:
        raise Refused("case_closed", f"cannot {action}: the referral is already {case.status.value}")


def _require_not_before_referral(case: Case, on: date) -> None:
    if on < case.referred_on:
        raise Refused("date_before_referral", f"{on.isoformat()} is before the referral date")


def decide_start_assessment(case: Case, on: date) -> AssessmentStarted:
    _require_open(case, "start an assessment")
    _require_not_before_referral(case, on)
    if case.status is CaseStatus.IN_ASSESSMENT:
        raise Refused("already_in_assessment", "the citizen is already in assessment")
    return AssessmentStarted()


def decide_decline(case: Case, reason: str, on: date) -> ReferralDeclined:
    _require_open(case, "decline")
    _require_not_before_referral(case, on)
    return ReferralDeclined(reason=reason)


def decide_withdraw(case: Case, reason: str, on: date) -> ReferralWithdrawn:
    _require_open(case, "withdraw")
    _require_not_before_referral(case, on)
    return ReferralWithdrawn(reason=reason)
