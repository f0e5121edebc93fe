"""The evaluator's export: pseudonymised CSV, one row per course and one per measurement.

A citizen's pseudonym is a keyed hash of their citizen id, stable across
exports (and across a citizen's courses) as long as the deployment's secret
is; a course's id is pseudonymised the same way. Records a coordinator
confirmed are one person share one pseudonym (that of the lowest record id
among them). No name, alias, CPR number, birth date or free text is ever in an
export: only the age band at referral.

An erased citizen record has no rows in an export made after its erasure: a
pseudonymised row is still personal data, and its stable pseudonym would keep
linking the person to rows of earlier exports. The anonymous statistics still
count them (see the README, "Erasure").
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from datetime import date
from typing import Any

from services.reporting.projection import course_doc, programme_cases
from services.reporting.queries import Reports
from shared.aggregates import erased_records, load_identity
from shared.domain.programme import course_dates
from shared.redis_values import as_text

COURSE_COLUMNS = {
    "citizen": "pseudonym of the citizen (the same in every course and export)",
    "course": "pseudonym of the course (one referral and the course that may follow)",
    "programme_id": "the programme",
    "referring_partner": "the partner that referred, or self (blank for a reopened course)",
    "reopened": "1 when a coordinator reopened a closed course as this one (the same citizen)",
    "age_band": "age at referral: under_18, 18_24 or 25_plus (blank when unknown)",
    "referred_on": "date of the referral (henvendelse)",
    "status": "status on the export date: referred, in_assessment, enrolled, closed:<reason>, declined, ...",
    "enrolled_on": "date of the first star (indskrevet)",
    "method": "cti, icm or act",
    "planned_end": "min(enrolment + course length, funding end)",
    "truncated": "1 when the funding end cuts the course short",
    "closed_on": "date the course closed",
    "phase": "the phase the course is in (or ended in)",
}
MEASUREMENT_COLUMNS = {
    "citizen": "pseudonym of the citizen",
    "course": "pseudonym of the course",
    "on": "date of the measurement",
    "measure": "star (one row per area scored) or who5",
    "area": "the star's area (blank for WHO-5)",
    "score": "the star's score, or the WHO-5 raw score 0-25",
    "who5_percentage": "WHO-5 raw score x 4 (blank for stars)",
}


def pseudonym(secret: bytes, kind: str, identifier: str) -> str:
    return hmac.new(secret, f"pseudonym:{kind}:{identifier}".encode(), hashlib.sha256).hexdigest()[:16]


def _courses(reports: Reports, programme_id: str, secret: bytes) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Each course of a citizen not erased, by case id: its citizen's pseudonym, its own, and its read-model
    document."""
    ids = sorted(as_text(m) for m in reports.redis.smembers(reports.key(programme_cases(programme_id))))
    raw = reports.redis.mget([reports.key(course_doc(c)) for c in ids]) if ids else []
    docs = [(case_id, json.loads(doc)) for case_id, doc in zip(ids, raw, strict=True) if doc is not None]
    citizens = _citizen_pseudonyms(reports, programme_id, {doc["citizen_id"] for _, doc in docs}, secret)
    return {
        case_id: (citizens[doc["citizen_id"]], pseudonym(secret, "course", case_id), doc)
        for case_id, doc in docs
        if doc["citizen_id"] in citizens
    }


def pseudonymised_fidelity(
    report: dict[str, Any], reports: Reports, programme_id: str, secret: bytes
) -> dict[str, Any]:
    """The fidelity report as the evaluator may see it: each course by its pseudonym in the export, none of an
    erased citizen record. The shares, anonymous statistics, are those of every course, as the coordinator's."""
    courses = _courses(reports, programme_id, secret)
    workers = [
        worker
        | {
            "courses": [
                {"course": courses[row["case_id"]][1]} | {k: v for k, v in row.items() if k != "case_id"}
                for row in worker["courses"]
                if row["case_id"] in courses
            ]
        }
        for worker in report["workers"]
    ]
    return report | {"workers": workers}


def _citizen_pseudonyms(reports: Reports, programme_id: str, citizen_ids: set[str], secret: bytes) -> dict[str, str]:
    """The pseudonym of each record not erased: one per person, as coordinators confirmed matches (the log's
    identity stream) and leaving out erased records (their own streams), read from the log as the export is
    made."""
    if reports.store is None:
        raise RuntimeError("the export reads matches and erasures from the event log")
    erased = erased_records(reports.store, citizen_ids)
    person = {record: group for group in load_identity(reports.store, programme_id).merged() for record in group}
    return {c: pseudonym(secret, "citizen", min(person.get(c, {c}) - erased)) for c in sorted(citizen_ids - erased)}


def courses_csv(reports: Reports, programme_id: str, secret: bytes) -> str:
    programme = reports.programme(programme_id)
    rows = []
    for citizen, course, doc in _courses(reports, programme_id, secret).values():
        dates = course_dates(programme, date.fromisoformat(doc["enrolled_on"])) if doc.get("enrolled_on") else None
        rows.append(
            {
                "citizen": citizen,
                "course": course,
                "programme_id": programme_id,
                "referring_partner": "" if doc.get("reopened") else doc["source"],
                "reopened": int(bool(doc.get("reopened"))),
                "age_band": doc.get("age_band") or "",
                "referred_on": doc["referred_on"],
                "status": doc["status"],
                "enrolled_on": doc.get("enrolled_on") or "",
                "method": doc.get("method") or "",
                "planned_end": dates.planned_end.isoformat() if dates else "",
                "truncated": int(dates.truncated) if dates else "",
                "closed_on": doc.get("closed_on") or "",
                "phase": doc.get("phase") or "",
            }
        )
    return _csv(COURSE_COLUMNS, sorted(rows, key=lambda r: (r["referred_on"], r["course"])))


def measurements_csv(reports: Reports, programme_id: str, secret: bytes) -> str:
    rows = []
    for citizen, course, doc in _courses(reports, programme_id, secret).values():
        for on, measure, area, score in doc.get("measurements", []):
            rows.append(
                {
                    "citizen": citizen,
                    "course": course,
                    "on": on,
                    "measure": measure,
                    "area": area or "",
                    "score": score,
                    "who5_percentage": score * 4 if measure == "who5" else "",
                }
            )
    return _csv(MEASUREMENT_COLUMNS, sorted(rows, key=lambda r: (r["on"], r["course"], r["area"])))


def _csv(columns: dict[str, str], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
