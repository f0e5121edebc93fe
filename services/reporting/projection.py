"""Reporting read models, projected from the log.

Referrals per partner: one hash per (programme, partner) with counters, and a
set of the programme's partners. Counters are shared across partitions, so
they only ever change by increments; the small per-referral document that
remembers which partner a case came from belongs to the case's partition.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.domain.events import AssessmentStarted, ReferralDeclined, ReferralReceived, ReferralWithdrawn
from shared.events import RecordedEvent
from shared.projections import ProjectionState

OUTCOME_FIELDS = {
    AssessmentStarted: "accepted",
    ReferralDeclined: "declined",
    ReferralWithdrawn: "withdrawn",
}


def referral_doc_name(case_id: str) -> str:
    return f"referral:{case_id}"


def partners_set_name(programme_id: str) -> str:
    return f"programme:{programme_id}:partners"


def partner_counts_name(programme_id: str, partner: str) -> str:
    return f"programme:{programme_id}:partner:{partner}"


class ReportingProjection:
    name = "reporting"
    version = 1

    def apply(self, events: Sequence[RecordedEvent], state: ProjectionState) -> None:
        state.load_docs(referral_doc_name(e.stream_id) for e in events if e.stream_id.startswith("case-"))
        for event in events:
            payload = event.payload
            if isinstance(payload, ReferralReceived):
                state.put_doc(
                    referral_doc_name(event.stream_id),
                    {"programme_id": payload.programme_id, "source": payload.source},
                )
                state.add(partners_set_name(payload.programme_id), payload.source)
                state.incr(partner_counts_name(payload.programme_id, payload.source), "referrals")
            elif (outcome := OUTCOME_FIELDS.get(type(payload))) is not None:
                referral = state.get_doc(referral_doc_name(event.stream_id))
                if referral is None:
                    raise RuntimeError(f"{event.stream_id}: outcome before referral")
                state.incr(partner_counts_name(referral["programme_id"], referral["source"]), outcome)
