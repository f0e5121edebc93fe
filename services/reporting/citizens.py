"""A citizen over their referrals, for a status report and success criteria that count citizens, not referrals.

DOMAIN.md's status report is a count of citizens ("16 enrolled, 3 in assessment, 37 closed (56 distinct citizens
in all)"), while the calendar sums count each referral in its own status. Most citizens have one referral, and
their status is its status. A citizen with several (referred by two partners, a course reopened after a closure,
records a coordinator confirmed are one person) is counted once, in the status that says most about them on the
day: an open referral before an ended one (the most engaged of them: enrolled, then in assessment, then referred),
and among ended ones the one that ended last.

The reporting worker keeps, for each citizen with several referrals, the change that turns their referrals'
counts into their own as calendar sums (``correction_steps``, settled by ``services.reporting.settle``), so a
report reads a bounded number of counters; records confirmed as one person are joined when a report is read
(``one_of`` over each record's own status). The success criteria are settled the same way
(``criteria_correction_steps``, over ``criteria.citizen_on``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.reporting.criteria import citizen_steps, criteria_steps

OPEN = ("enrolled", "in_assessment", "referred")  # the most engaged first

Counted = tuple[str, str, str]  # (status, since, case id) on a day


@dataclass(frozen=True)
class ReferralSummary:
    """What a count per citizen reads of one referral, as the reporting projection keeps it (its document
    ``settle.referral_summary``): its status moves and what the success criteria read of its course."""

    case_id: str
    families: tuple[str, ...]  # "all", the referring partner's ("partner:<id>"), the method's once enrolled
    moves: tuple[tuple[str, str], ...]  # (ISO day, status), in date order (``decide`` refuses a move dated back)
    criteria: Mapping[str, Any] = field(default_factory=dict)  # the course document's fields ``criteria`` reads

    @classmethod
    def from_doc(cls, case_id: str, doc: Mapping[str, Any]) -> ReferralSummary:
        moves = tuple((on, status) for on, status in doc["moves"])
        return cls(case_id, tuple(doc["families"]), moves, doc.get("criteria", {}))

    def on(self, day: str) -> Counted | None:
        """The status on a day, since when; None before the referral."""
        found = None
        for since, status in self.moves:
            if since > day:
                break
            found = (status, since, self.case_id)
        return found


def on_day(courses: Iterable[ReferralSummary], family: str, day: str) -> list[Counted]:
    """Each of the referrals in the family made by the day, in its status on the day."""
    return [found for c in courses if family in c.families and (found := c.on(day))]


def most_telling(counted: Sequence[Counted]) -> Counted:
    """The referral a citizen counts by: an open one before an ended one, else the one that ended last."""
    if open_ := [c for c in counted if c[0] in OPEN]:
        return min(open_, key=lambda c: OPEN.index(c[0]))
    return max(counted, key=lambda c: (c[1], c[2]))


def one_of(counted: Sequence[Counted]) -> dict[str, int]:
    """The change to the status counts that counts these once: each out of its status, the most telling in."""
    if len(counted) < 2:
        return {}
    change = Counter[str]()
    for status, _, _ in counted:
        change[status] -= 1
    change[most_telling(counted)[0]] += 1
    return {status: n for status, n in change.items() if n}


def correction_steps(courses: Sequence[ReferralSummary]) -> dict[tuple[str, str, str], int]:
    """One citizen's correction as calendar changes, (family, day, status) -> change: from each day one of their
    referrals moved on, what turns their referrals' counts into their own (nothing while they have one)."""
    steps: dict[tuple[str, str, str], int] = {}
    families = sorted({f for c in courses for f in c.families if not f.startswith("method:")})  # a citizen has none
    for family in families:
        mine = [c for c in courses if family in c.families]
        if len(mine) < 2:
            continue
        before: dict[str, int] = {}
        for day in sorted({on for c in mine for on, _ in c.moves}):
            now = one_of(on_day(mine, family, day))
            for status in before.keys() | now.keys():
                if change := now.get(status, 0) - before.get(status, 0):
                    steps[(family, day, status)] = change
            before = now
    return steps


def criteria_correction_steps(referrals: Sequence[ReferralSummary]) -> dict[tuple[str, str, str], int]:
    """One citizen's correction of the success criteria, (family, day, field) -> change: what turns the counts
    of their courses, each counted on its own, into the citizen's counted once over all of them (nothing while
    they have one course in the family)."""
    steps: dict[tuple[str, str, str], int] = {}
    for family in sorted({f for r in referrals for f in r.families}):
        courses = [dict(r.criteria) for r in referrals if family in r.families and r.criteria.get("enrolled_on")]
        if len(courses) < 2:
            continue
        change = Counter(citizen_steps(courses))
        for course in courses:
            change.subtract(criteria_steps(course))
        steps |= {(family, day, name): n for (day, name), n in change.items() if n}
    return steps
