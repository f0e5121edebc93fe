"""Answers from the reporting read models. Each reads a bounded number of counters: never the events."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

import redis

from services.reporting.projection import (
    ReportingProjection,
    cohorts,
    first_referrals,
    partners_of,
    status_deltas,
)
from shared.projections import active_namespace
from shared.redis_values import as_text

STATUSES = ("referred", "in_assessment", "enrolled", "closed", "declined", "withdrawn", "referred_on")
DANISH = {
    "referred": "henvendelse",
    "in_assessment": "i afklaring",
    "enrolled": "indskrevet",
    "closed": "afsluttet",
    "declined": "afvist",
    "withdrawn": "trukket tilbage",
    "referred_on": "henvist videre",
}
COUNTERS = ("referrals", "accepted", "declined", "withdrawn", "referred_on", "enrolled")


class Reports:
    def __init__(self, connection: redis.Redis, prefix: str) -> None:
        self.redis = connection
        self.ns = active_namespace(connection, prefix, ReportingProjection())

    def _key(self, name: str) -> str:
        return f"{self.ns}:{name}"

    def _hash(self, name: str) -> dict[str, int]:
        return {as_text(k): int(v) for k, v in self.redis.hgetall(self._key(name)).items()}

    def status_on(
        self, programme_id: str, day: date, partner: str | None = None, method: str | None = None
    ) -> dict[str, Any]:
        """How many were referred, in assessment, enrolled, closed (by reason), declined... on a date."""
        family = f"partner:{partner}" if partner else f"method:{method}" if method else "all"
        totals: dict[str, int] = defaultdict(int)
        cutoff = day.isoformat()
        for field, delta in self._hash(status_deltas(programme_id, family)).items():
            status, on = field.rsplit("|", 1)
            if on <= cutoff:
                totals[status] += delta
        by_reason = {s.split(":", 1)[1]: n for s, n in sorted(totals.items()) if s.startswith("closed:") and n}
        counts = {s: totals.get(s, 0) for s in STATUSES if s != "closed"} | {"closed": sum(by_reason.values())}
        citizens = None
        if not method:  # methods are a property of courses, not of citizens
            citizens = int(self.redis.zcount(self._key(first_referrals(programme_id, family)), "-inf", day.toordinal()))
        return {
            "programme_id": programme_id,
            "on": cutoff,
            "filter": {"partner": partner, "method": method},
            "counts": {s: counts[s] for s in STATUSES},
            "closed_by_reason": by_reason,
            "distinct_citizens": citizens,
            "labels_da": DANISH,
        }

    def _cohorts(self, programme_id: str, start: str | None, end: str | None) -> list[tuple[str, str, str, int]]:
        rows = []
        for field, value in self._hash(cohorts(programme_id)).items():
            partner, month, counter = field.split("|")
            if (start is None or month >= start) and (end is None or month <= end):
                rows.append((partner, month, counter, value))
        return rows

    def intake(
        self, programme_id: str, start: str | None, end: str | None, partner: str | None = None
    ) -> dict[str, Any]:
        """Referrals per month (by referral date) and the average per month over the period."""
        per_month: dict[str, int] = defaultdict(int)
        for who, month, counter, value in self._cohorts(programme_id, start, end):
            if counter == "referrals" and (partner is None or who == partner):
                per_month[month] += value
        first = start or min(per_month, default=None)
        last = end or max(per_month, default=None)
        months = _months(first, last) if first and last else []
        total = sum(per_month.values())
        return {
            "programme_id": programme_id,
            "filter": {"partner": partner, "from": first, "to": last},
            "months": [{"month": m, "referrals": per_month.get(m, 0)} for m in months],
            "total": total,
            "average_per_month": round(total / len(months), 2) if months else 0,
        }

    def referrals_per_partner(
        self, programme_id: str, start: str | None = None, end: str | None = None, only_partner: str | None = None
    ) -> dict[str, Any]:
        """Each partner's referrals in the period and what became of them; days from referral to enrolment."""
        sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for partner, _, counter, value in self._cohorts(programme_id, start, end):
            sums[partner][counter] += value
        partners = sorted(as_text(m) for m in self.redis.smembers(self._key(partners_of(programme_id))))
        if only_partner is not None:
            partners = [p for p in partners if p == only_partner]
        rows = [_partner_row(p, sums[p]) for p in partners]
        total = _partner_row("all", {c: sum(sums[p][c] for p in partners) for c in (*COUNTERS, "days_to_enrolment")})
        return {
            "programme_id": programme_id,
            "filter": {"from": start, "to": end},
            "partners": rows,
            "total": {k: v for k, v in total.items() if k != "partner"},
        }


def _partner_row(partner: str, counts: dict[str, int]) -> dict[str, Any]:
    enrolled = counts.get("enrolled", 0)
    average = round(counts.get("days_to_enrolment", 0) / enrolled, 1) if enrolled else None
    return {"partner": partner} | {c: counts.get(c, 0) for c in COUNTERS} | {"average_days_to_enrolment": average}


def _months(first: str, last: str) -> list[str]:
    year, month = int(first[:4]), int(first[5:7])
    months = []
    while f"{year:04d}-{month:02d}" <= last:
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months
