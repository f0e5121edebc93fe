"""Reads of the caseflow read model, for the services that show it and the jobs that act on it."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import redis

from services.caseflow.projection import (
    PROGRAMMES,
    CaseflowProjection,
    case_doc_name,
    caseload_doc_name,
    programme_doc_name,
    programme_index_name,
)
from shared.domain.case import Case, CaseStatus
from shared.domain.caseload import caseload_from_doc
from shared.domain.programme import programme_from_doc
from shared.domain.status import next_assessment_due
from shared.projections import active_namespace
from shared.redis_values import as_text


class ReadModel:
    def __init__(self, connection: redis.Redis, prefix: str) -> None:
        self.redis = connection
        self.ns = active_namespace(connection, prefix, CaseflowProjection())

    def members(self, name: str) -> list[str]:
        return sorted(as_text(m) for m in self.redis.smembers(f"{self.ns}:{name}"))

    def docs(self, names: list[str]) -> list[dict[str, Any]]:
        if not names:
            return []
        raw = self.redis.mget([f"{self.ns}:{n}" for n in names])
        return [json.loads(r) for r in raw if r is not None]

    def doc(self, name: str) -> dict[str, Any] | None:
        found = self.docs([name])
        return found[0] if found else None

    def programme_ids(self) -> list[str]:
        return self.members(PROGRAMMES)

    def cases(self, programme_id: str) -> list[Case]:
        ids = self.members(programme_index_name(programme_id))
        return [Case.from_stored(d) for d in self.docs([case_doc_name(c) for c in ids])]


def cases_of_programme(connection: redis.Redis, prefix: str, programme_id: str) -> list[dict[str, Any]]:
    return [
        {
            "case_id": c.case_id,
            "status": c.status.value,
            "referred_on": c.referred_on.isoformat(),
            "source": c.source,
            "phase": c.phase,
            "version": c.version,
        }
        for c in ReadModel(connection, prefix).cases(programme_id)
    ]


def overdue_assessments(
    connection: redis.Redis, prefix: str, programme_id: str, worker_id: str, on: date
) -> list[dict[str, Any]]:
    """A worker's enrolled citizens whose next star was due before ``on``."""
    model = ReadModel(connection, prefix)
    programme_doc, caseload_doc = (
        model.doc(programme_doc_name(programme_id)),
        model.doc(caseload_doc_name(programme_id)),
    )
    if programme_doc is None or caseload_doc is None:
        return []
    programme = programme_from_doc(programme_doc)
    case_ids = caseload_from_doc(caseload_doc).cases_of(worker_id)
    rows = []
    for case in (Case.from_stored(d) for d in model.docs([case_doc_name(c) for c in case_ids])):
        due = next_assessment_due(case, programme)
        if case.status is CaseStatus.ENROLLED and due is not None and due < on:
            rows.append(
                {
                    "case_id": case.case_id,
                    "last_star_on": str(case.last_star_on),
                    "due": due.isoformat(),
                    "days_overdue": (on - due).days,
                }
            )
    return sorted(rows, key=lambda r: r["due"])
