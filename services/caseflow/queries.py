"""Reads of the caseflow read model, for the services that show it."""

from __future__ import annotations

import json
from typing import Any

import redis

from services.caseflow.projection import CaseflowProjection, case_doc_name, programme_index_name
from shared.keys import ProjectionKeys
from shared.redis_values import as_text


def _namespace(prefix: str) -> str:
    return ProjectionKeys(prefix, CaseflowProjection.name).namespace(CaseflowProjection.version)


def cases_of_programme(connection: redis.Redis, prefix: str, programme_id: str) -> list[dict[str, Any]]:
    ns = _namespace(prefix)
    case_ids = sorted(as_text(m) for m in connection.smembers(f"{ns}:{programme_index_name(programme_id)}"))
    if not case_ids:
        return []
    docs = connection.mget([f"{ns}:{case_doc_name(c)}" for c in case_ids])
    return [
        {k: doc[k] for k in ("case_id", "status", "referred_on", "source", "version")}
        for doc in (json.loads(raw) for raw in docs if raw is not None)
    ]
