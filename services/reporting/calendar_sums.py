"""Dated counters whose total on any date is read from three small hashes, however long the programme ran.

A change of ``amount`` to ``who`` (a status, a worker...) on a day is added to
three buckets of a series: the day's year, its month, and the day itself, each
hash holding one calendar unit's fields:

- ``<series>:years``            "<who>|YYYY"       -> the year's changes
- ``<series>:months:YYYY``      "<who>|YYYY-MM"    -> the month's changes
- ``<series>:days:YYYY-MM``     "<who>|YYYY-MM-DD" -> the day's changes

The total on a date is the years before its year, the months before its month
in that year, and the days up to it in that month: at most (years + 12 + 31)
fields per ``who``, whatever the number of events or days with changes. Every
write is an increment, so partitions may commit in any order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import date

import redis

from shared.projections import ProjectionState
from shared.redis_values import as_text


def _buckets(series: str, iso: str) -> tuple[tuple[str, str, bool], ...]:
    """A day's three buckets: (hash, the day's unit in it, whether a total on the day includes that unit)."""
    return (
        (f"{series}:years", iso[:4], False),  # a total counts the years before
        (f"{series}:months:{iso[:4]}", iso[:7], False),  # the months before, that year
        (f"{series}:days:{iso[:7]}", iso, True),  # the days up to the day, that month
    )


def add_on(state: ProjectionState, series: str, who: str, day: date, amount: int) -> None:
    for name, field, change in changes_on(series, who, day, amount):
        state.incr(name, field, change)


def changes_on(series: str, who: str, day: date, amount: int) -> list[tuple[str, str, int]]:
    """The three increments (hash, field, amount) that add ``amount`` to ``who`` on a day."""
    return [(name, f"{who}|{unit}", amount) for name, unit, _ in _buckets(series, day.isoformat())]


def totals_on(
    connection: redis.Redis, key: Callable[[str], str], series: str | Sequence[str], days: Iterable[date]
) -> list[dict[str, int]]:
    """Each ``who``'s total on each of the days, in one series or summed over several (one round trip for all)."""
    several = [series] if isinstance(series, str) else series
    wanted = [[bucket for one in several for bucket in _buckets(one, day.isoformat())] for day in days]
    names = list(dict.fromkeys(name for buckets in wanted for name, _, _ in buckets))
    pipe = connection.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(key(name))
    stored = {
        name: [(as_text(field).rsplit("|", 1), int(value)) for field, value in reply.items()]
        for name, reply in zip(names, pipe.execute(), strict=True)
    }
    answers = []
    for buckets in wanted:
        totals = defaultdict[str, int](int)
        for name, cutoff, inclusive in buckets:
            for (who, unit), amount in stored[name]:
                if unit < cutoff or (inclusive and unit == cutoff):
                    totals[who] += amount
        answers.append(dict(totals))
    return answers
