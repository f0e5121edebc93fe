"""Which citizen records are one person: CPR numbers link at referral; without one, coordinators decide.

Records sharing a match key (a keyed hash of alias + birth date) are proposed as
one person. A coordinator confirms or rejects each pair; a rejected pair is
never proposed again, and confirmed pairs join (transitively) into one person.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from itertools import combinations

from shared.domain.case import Case, Refused
from shared.domain.events import MatchConfirmed, MatchRejected
from shared.events import DomainEvent


def identity_stream(programme_id: str) -> str:
    return f"identity-{programme_id}"


def citizen_stream(citizen_id: str) -> str:
    """A citizen record's own stream: it holds the record's erasure, if any."""
    return f"citizen-{citizen_id.removeprefix('citizen-')}"


def pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


@dataclass(frozen=True)
class Identity:
    confirmed: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    rejected: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    version: int = 0

    def person_of(self, citizen_id: str) -> set[str]:
        """Every record confirmed (directly or through others) to be the same person."""
        group, frontier = {citizen_id}, [citizen_id]
        while frontier:
            current = frontier.pop()
            for a, b in self.confirmed:
                other = b if a == current else a if b == current else None
                if other and other not in group:
                    group.add(other)
                    frontier.append(other)
        return group

    def merged(self) -> list[set[str]]:
        """Every group of two or more records confirmed to be one person."""
        seen: set[str] = set()
        groups = []
        for a, _ in sorted(self.confirmed):
            if a not in seen:
                group = self.person_of(a)
                seen |= group
                groups.append(group)
        return groups


def evolve_identity(identity: Identity, event: DomainEvent) -> Identity:
    identity = replace(identity, version=identity.version + 1)
    match event:
        case MatchConfirmed(citizen_a=a, citizen_b=b):
            return replace(identity, confirmed=identity.confirmed | {pair(a, b)})
        case MatchRejected(citizen_a=a, citizen_b=b):
            return replace(identity, rejected=identity.rejected | {pair(a, b)})
    raise ValueError(f"identity: no rule for {type(event).__name__}")


def probable_matches(cases: list[Case], identity: Identity) -> list[tuple[str, str]]:
    """Pairs of records that share a match key and are neither decided nor already one person."""
    by_key: dict[str, set[str]] = defaultdict(set)
    for case in cases:
        if case.match_key:
            by_key[case.match_key].add(case.citizen_id)
    proposals = set()
    for citizens in by_key.values():
        for a, b in combinations(sorted(citizens), 2):
            if pair(a, b) not in identity.rejected and b not in identity.person_of(a):
                proposals.add(pair(a, b))
    return sorted(proposals)


def decide_match(
    identity: Identity, proposals: list[tuple[str, str]], a: str, b: str, confirm: bool
) -> MatchConfirmed | MatchRejected:
    if pair(a, b) not in proposals:
        raise Refused("not_proposed", "these two records are not a proposed match (or were decided already)")
    return MatchConfirmed(*pair(a, b)) if confirm else MatchRejected(*pair(a, b))
