"""The Ballerup agreement's success criteria: which numerators and denominators a course, or a citizen, counts in.

The criteria are about young people ("90 % of those who moved into permanent housing still live there"), so a
citizen with two courses in a programme (a course reopened after its closure) counts once, over the records of
both: ``citizen_on`` reads a citizen's courses as one course that began with the first enrolment. The reporting
projection keeps each course's counts as calendar sums (``criteria_steps``) and settles, for a citizen with
several courses, the difference that turns those into the citizen's (``citizens.criteria_correction_steps``).

All of it works on the course document the reporting projection keeps (ISO dates as strings): pure functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from operator import itemgetter
from typing import Any

import orjson

from shared.domain.calendar import add_months

Steps = dict[tuple[str, str], int]  # (ISO day, field) -> change on that day


def criteria_on(doc: dict[str, Any], day: str) -> dict[str, int]:
    """Which numerators and denominators of the success criteria one course counts in on a day (ISO date;
    0 or 1 each), from what was recorded as happening by then. Only courses (enrolled citizens) count."""
    if not doc.get("enrolled_on") or doc["enrolled_on"] > day:
        return {}
    # What the course recorded by then: a closure dated back before records already made ends the course there.
    closed = _dated_by(doc.get("closed_on"), day)
    seen = closed or day
    # In date order, the latest last (as intake records them since the domain refused back-dated records; a log
    # from before holds some out of order).
    housing = [situation for on, situation in _by_date(doc.get("housing", [])) if on <= seen]
    treatment = [in_treatment for on, in_treatment in _by_date(doc.get("treatment", [])) if on <= seen]
    ever_permanent = "permanent" in housing
    band = doc.get("age_band")
    activity, education = (_dated_by(doc.get(k), seen) for k in ("activity_ready_on", "education_ready_on"))
    # Within a calendar year (366 days across a 29 February). A course counts in the denominator once that is
    # decided: on the day it became education-ready in time, or once its year is over or the course closed
    # without it; while the year is open it is pending, not a failure.
    window_end = _year_after(activity) if activity else None
    ready_in_time = bool(activity and education and window_end and activity <= education <= window_end)
    decided = ready_in_time or bool(window_end and (day > window_end or closed))
    counted = {
        "kept|n": ever_permanent,
        "kept|still": ever_permanent and housing[-1] == "permanent",
        "kept|cti_icm": ever_permanent and doc.get("method") in ("cti", "icm"),
        "addiction|n": bool(treatment),
        "addiction|in_treatment": bool(treatment) and treatment[-1],
        "jobcentre|n": decided,
        "jobcentre|education_ready": ready_in_time,
    }
    if band:
        counted |= {f"housing|{band}|n": True, f"housing|{band}|housed": ever_permanent}
    return {k: int(v) for k, v in counted.items()}


def criteria_steps(doc: dict[str, Any]) -> Steps:
    """A course's counts in the success criteria over time, as changes: (day, field) -> change on that day.
    They change only on the days of what ``criteria_on`` reads, so those days are the only ones looked at."""
    if not doc.get("enrolled_on"):
        return {}
    return _steps(change_days([doc]), lambda day: criteria_on(doc, day))


def citizen_on(courses: Sequence[dict[str, Any]], day: str) -> dict[str, int]:
    """What one citizen counts in on a day over all their courses, as ``criteria_on`` reads one course: enrolled
    since their first enrolment, closed when every course begun by then is (on the last closure), each course's
    own records up to its own closure, housing and treatment in date order across courses, education-ready
    within a year of the first activity-ready whichever course recorded it, CTI or ICM if any course was, and
    the age band they came in with."""
    begun = sorted((c for c in courses if c.get("enrolled_on") and c["enrolled_on"] <= day), key=_course_order)
    if not begun:
        return {}
    closures = [_dated_by(c.get("closed_on"), day) for c in begun]

    def records(key: str) -> list[list[Any]]:
        """Each course's records up to its closure, in date order (a day's in the order the courses ran)."""
        return _by_date([r for c in begun for r in c.get(key, []) if not c.get("closed_on") or r[0] <= c["closed_on"]])

    job_centre = records("jobcentre")
    # As a course keeps them: the first activity-ready, and the first education-ready recorded after it.
    first = next((i for i, (_, category) in enumerate(job_centre) if category == "activity_ready"), None)
    activity = job_centre[first][0] if first is not None else None
    later = job_centre[first + 1 :] if first is not None else []
    education = next((on for on, category in later if category == "education_ready"), None)
    methods = [c.get("method") for c in begun]
    one = {
        "enrolled_on": begun[0]["enrolled_on"],
        "closed_on": max(c for c in closures if c) if all(closures) else None,
        "housing": records("housing"),
        "treatment": records("treatment"),
        "age_band": begun[0].get("age_band"),
        "method": next((m for m in methods if m in ("cti", "icm")), methods[0]),
        "activity_ready_on": activity,
        "education_ready_on": education,
    }
    return criteria_on(one, day)


def _course_order(course: dict[str, Any]) -> tuple[Any, ...]:
    """The order a citizen's courses ran in: by enrolment, a course reopened on the day of its first's closure
    after it. Courses begun on the same day (two referrals enrolled at once) are ordered by what the criteria read
    of them, a known age band first: otherwise the citizen's age band, and the order of a day's records across the
    courses, would follow the order the courses were listed in, which differs between a settle and a report."""
    band = course.get("age_band")
    records = orjson.dumps([course.get(key, []) for key in ("housing", "treatment", "jobcentre")])
    return (
        course["enrolled_on"],
        course.get("closed_on") or "9999-12-31",
        band is None,
        band or "",
        course.get("method") or "",
        records,
    )


def citizen_steps(courses: Sequence[dict[str, Any]]) -> Steps:
    """A citizen's counts over time, as ``criteria_steps`` gives a course's."""
    if not any(c.get("enrolled_on") for c in courses):
        return {}
    return _steps(change_days(courses), lambda day: citizen_on(courses, day))


def change_days(courses: Iterable[dict[str, Any]]) -> set[str]:
    """The days on which what the criteria read of these courses can change."""
    days: set[str] = set()
    for doc in courses:
        if not doc.get("enrolled_on"):
            continue
        days.add(doc["enrolled_on"])
        days |= {on for key in ("housing", "treatment", "jobcentre") for on, _ in doc.get(key, [])}
        days |= {doc[k] for k in ("activity_ready_on", "education_ready_on", "closed_on") if doc.get(k)}
        for on, category in doc.get("jobcentre", []):  # the day after a year, when one not ready by then fails
            if category == "activity_ready":
                days.add((date.fromisoformat(_year_after(on)) + timedelta(days=1)).isoformat())
        if doc.get("activity_ready_on"):
            days.add((date.fromisoformat(_year_after(doc["activity_ready_on"])) + timedelta(days=1)).isoformat())
    return days


def _steps(days: set[str], counted_on: Callable[[str], dict[str, int]]) -> Steps:
    steps: Steps = {}
    before: dict[str, int] = {}
    for day in sorted(days):
        now = counted_on(day)
        for field in before.keys() | now.keys():
            if change := now.get(field, 0) - before.get(field, 0):
                steps[(day, field)] = change
        before = now
    return steps


def _by_date(records: list[list[Any]]) -> list[list[Any]]:
    """Dated records in date order (stable: one day's keep the order they were recorded in)."""
    return sorted(records, key=itemgetter(0))


def _year_after(on: str) -> str:
    """The last day of the calendar year that begins on an ISO date (ISO as well)."""
    return add_months(date.fromisoformat(on), 12).isoformat()


def _dated_by(on: str | None, day: str) -> str | None:
    """A recorded date, if it is no later than the day."""
    return on if on and on <= day else None
