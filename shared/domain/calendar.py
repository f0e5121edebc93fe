"""Calendar rules: "a course of N months" runs to the same day N months later, clamped to month end."""

from __future__ import annotations

import calendar
from datetime import date

# The dates the suite takes at all: older ones are typing errors, and later months would have reports run to
# a year Python's dates do not have (a range of months to 9999-12 answered 500 and tens of megabytes).
EARLIEST_DATE = date(2000, 1, 1)
LATEST_PLANNING_DATE = date(2100, 12, 31)


def add_months(day: date, months: int) -> date:
    """31 Jan + 1 month is 28 or 29 Feb; 29 Feb 2016 + 12 months is 28 Feb 2017."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def months_between(start: date, end: date) -> float:
    """Whole calendar months from start to end, plus the fraction of the month after them."""
    if end < start:
        raise ValueError("end before start")
    whole = (end.year - start.year) * 12 + end.month - start.month
    while whole > 0 and add_months(start, whole) > end:
        whole -= 1
    anchor, following = add_months(start, whole), add_months(start, whole + 1)
    return whole + (end - anchor).days / (following - anchor).days
