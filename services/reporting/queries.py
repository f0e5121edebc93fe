"""Reads of the reporting read models."""

from __future__ import annotations

from typing import Any

import redis

from services.reporting.projection import ReportingProjection, partner_counts_name, partners_set_name
from shared.projections import active_namespace
from shared.redis_values import as_text

COUNTERS = ("referrals", "accepted", "declined", "withdrawn")


def referrals_per_partner(
    connection: redis.Redis, prefix: str, programme_id: str, only_partner: str | None = None
) -> dict[str, Any]:
    ns = active_namespace(connection, prefix, ReportingProjection())
    partners = sorted(as_text(m) for m in connection.smembers(f"{ns}:{partners_set_name(programme_id)}"))
    if only_partner is not None:
        partners = [p for p in partners if p == only_partner]
    pipe = connection.pipeline(transaction=False)
    for partner in partners:
        pipe.hgetall(f"{ns}:{partner_counts_name(programme_id, partner)}")
    rows = []
    for partner, counts in zip(partners, pipe.execute(), strict=True):
        decoded = {as_text(k): int(v) for k, v in counts.items()}
        rows.append({"partner": partner} | {c: decoded.get(c, 0) for c in COUNTERS})
    return {
        "programme_id": programme_id,
        "partners": rows,
        "total": {c: sum(r[c] for r in rows) for c in COUNTERS},
    }
