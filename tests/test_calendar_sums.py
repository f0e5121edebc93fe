"""Calendar sums: the total on any date, read from year, month and day buckets, is the plain sum of the
changes up to that date (both backends)."""

from __future__ import annotations

from datetime import date, timedelta

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.reporting.calendar_sums import add_on, totals_on
from shared.projections import ProjectionState
from shared.redis_values import write

DAYS = st.dates(min_value=date(2015, 11, 1), max_value=date(2018, 2, 28))
CHANGES = st.lists(st.tuples(st.sampled_from(["referred", "enrolled", "anna"]), DAYS, st.integers(-3, 3)), max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=CHANGES, asked=st.lists(DAYS, min_size=1, max_size=5))
def test_the_total_on_a_date_is_the_sum_of_the_changes_up_to_it(
    connection: redis.Redis, changes: list[tuple[str, date, int]], asked: list[date]
) -> None:
    connection.flushdb()
    state = ProjectionState(connection, "t")
    for who, day, amount in changes:
        add_on(state, "series", who, day, amount)
    write(connection, state.take_writes())
    # Also the days either side of each month and year end, where the buckets meet.
    edges = [d + timedelta(days=k) for d in (date(2016, 12, 31), date(2017, 1, 31)) for k in (-1, 0, 1)]
    days = asked + edges
    for day, totals in zip(days, totals_on(connection, lambda name: f"t:{name}", "series", days), strict=True):
        expected: dict[str, int] = {}
        for who, on, amount in changes:
            if on <= day:
                expected[who] = expected.get(who, 0) + amount
        assert {w: n for w, n in totals.items() if n} == {w: n for w, n in expected.items() if n}, day
