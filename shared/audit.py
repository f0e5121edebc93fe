"""The access log: every read and write of a case, and every refused attempt. Ids only, nothing personal.

Kept beside the event log (it records who looked, not what happened to the
citizen), as one Redis stream per case, so a coordinator can list who touched
a citizen's cases.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis

from shared.domain.access import Principal
from shared.redis_values import as_text, stream_entries


def audit_key(prefix: str, case_id: str) -> str:
    return f"{prefix}:audit:case:{case_id}"


def record_access(
    connection: redis.Redis, prefix: str, principal: Principal, case_id: str, action: str, allowed: bool
) -> None:
    connection.xadd(
        audit_key(prefix, case_id),
        {
            "at": datetime.now(UTC).isoformat(),
            "partner": principal.partner_id,
            "key": principal.key_id,
            "role": principal.role.value,
            "action": action,
            "allowed": "1" if allowed else "0",
        },
    )


def access_log(connection: redis.Redis, prefix: str, case_ids: list[str]) -> list[dict[str, Any]]:
    pipe = connection.pipeline(transaction=False)
    for case_id in case_ids:
        pipe.xrange(audit_key(prefix, case_id))
    entries = []
    for case_id, reply in zip(case_ids, pipe.execute(), strict=True):
        for _, fields in stream_entries(reply):
            row: dict[str, Any] = {as_text(k): as_text(v) for k, v in fields.items()}
            row["allowed"] = row["allowed"] == "1"
            entries.append({"case_id": case_id, **row})
    return sorted(entries, key=lambda e: e["at"])
