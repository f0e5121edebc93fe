"""Settling the citizens with several referrals: the counts of citizens, kept beside the referrals'.

A partition's worker sees only its own referrals, and a citizen's may lie in several partitions, so the worker
only marks such a citizen (``ProjectionState.mark_if``, at commit: whichever partition commits last sees the
others' referrals). ``settle_citizens`` then reads all the citizen's referrals as committed, works out their
corrections (``citizens.correction_steps`` of the status counts, ``citizens.criteria_correction_steps`` of the
success criteria) and moves ``citizen_deltas`` and ``citizen_success_deltas`` by their difference from the ones
it last settled. It is convergent, not counted: any number of settles, racing or crashing, end with the correction of
the referrals as they stand, because each writes under WATCH of the citizen's settled correction, and forgets a
mark only if no change came after the read.
"""

from __future__ import annotations

from datetime import date

import orjson
import redis

from services.reporting.calendar_sums import changes_on
from services.reporting.citizens import ReferralSummary, correction_steps, criteria_correction_steps
from shared.redis_values import as_text

# Calendar sums that settle leave with exactly the non-zero fields, however many settles it took.
_ADD_OR_DROP = """
for i, fields in ipairs(cjson.decode(ARGV[1])) do
  for field, amount in pairs(fields) do
    if tonumber(redis.call('HINCRBY', KEYS[i], field, amount)) == 0 then redis.call('HDEL', KEYS[i], field) end
  end
end
return 0
"""
_FORGET_IF_UNCHANGED = """
for i = 1, #ARGV, 2 do
  local marks = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if marks and tonumber(marks) == tonumber(ARGV[i + 1]) then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return 0
"""
SETTLE_AT_ONCE = 200


def referral_summary(case_id: str) -> str:
    """What a count per citizen reads of a referral (``citizens.ReferralSummary``)."""
    return f"referral-summary:{case_id}"


CITIZENS_TO_SETTLE = "citizens-to-settle"  # sorted set "<programme>|<citizen>" -> changes not yet settled


def settled(programme_id: str, citizen_id: str) -> str:
    """The corrections ``settle`` last put in ``citizen_deltas`` and ``citizen_success_deltas`` for a citizen with
    several referrals: [series, family, day, field, change], series "status" or "success"."""
    return f"programme:{programme_id}:settled:{citizen_id}"


def citizen_deltas(programme_id: str, family: str = "all") -> str:
    """Calendar sums that turn the referrals' status counts (``status_deltas``) into the citizens'."""
    return f"programme:{programme_id}:citizen-deltas:{family}"


def citizen_success_deltas(programme_id: str, family: str = "all") -> str:
    """Calendar sums that turn the courses' success criteria (``success_deltas``) into the citizens'."""
    return f"programme:{programme_id}:citizen-success-deltas:{family}"


SERIES = {"status": citizen_deltas, "success": citizen_success_deltas}


def citizen_referrals(programme_id: str) -> str:
    """Sorted set of "<citizen id>|<case id>", all at score 0: a citizen's referrals by a lexicographic range."""
    return f"programme:{programme_id}:citizen-referrals"


def referral_range(citizen_id: str) -> tuple[str, str]:
    """A citizen's members of ``citizen_referrals`` as a lexicographic range ('}' is the character after '|')."""
    return f"[{citizen_id}|", f"({citizen_id}}}"


def referrals_of(
    reader: redis.Redis, namespace: str, programme_id: str, citizen_ids: list[str]
) -> dict[str, list[str]]:
    """Each citizen's referrals (case ids), in one round trip."""
    pipe = reader.pipeline(transaction=False)
    for citizen in citizen_ids:
        pipe.zrangebylex(f"{namespace}:{citizen_referrals(programme_id)}", *referral_range(citizen))
    return {
        citizen: [as_text(m).split("|", 1)[1] for m in listed]
        for citizen, listed in zip(citizen_ids, pipe.execute(), strict=True)
    }


def summaries_of(reader: redis.Redis, namespace: str, case_ids: list[str]) -> dict[str, ReferralSummary]:
    raw = reader.mget([f"{namespace}:{referral_summary(c)}" for c in case_ids]) if case_ids else []
    return {
        c: ReferralSummary.from_doc(c, orjson.loads(doc))
        for c, doc in zip(case_ids, raw, strict=True)
        if doc is not None
    }


def settle_citizens(connection: redis.Redis, namespace: str, at_once: int = SETTLE_AT_ONCE) -> int:
    """Settle up to ``at_once`` marked citizens together, picked at random (workers settling at once seldom pick
    the same ones, and a citizen marked again and again waits no longer than one marked once); how many were
    marked (0: nothing to settle)."""
    listed: list[bytes] = connection.zrandmember(f"{namespace}:{CITIZENS_TO_SETTLE}", at_once) or []  # type: ignore[assignment]
    marked = list(dict.fromkeys(as_text(m) for m in listed))
    if marked:
        _settle(connection, namespace, marked)
    return len(marked)


def _settle(connection: redis.Redis, namespace: str, members: list[str]) -> None:
    """Settle several citizens in one transaction (a handful of round trips however many)."""
    marks_key = f"{namespace}:{CITIZENS_TO_SETTLE}"
    citizens = [tuple(m.split("|", 1)) for m in members]
    settled_keys = [f"{namespace}:{settled(p, c)}" for p, c in citizens]
    with connection.pipeline() as pipe:
        while True:
            try:
                # The marks are read after the WATCH: another settle that forgot one since wrote its settled
                # correction (always, even an empty one), which aborts this one, so a mark a batch set again
                # afterwards at the same count is never taken for the one read here.
                pipe.watch(*settled_keys)  # type: ignore[no-untyped-call]
                marks = pipe.zmscore(marks_key, members)
                olds = pipe.mget(settled_keys)
                still = [c for c, m in zip(citizens, marks, strict=True) if m is not None]
                cases = _referrals(connection, namespace, still)
                summaries = summaries_of(connection, namespace, [case for found in cases.values() for case in found])
                changes: dict[str, dict[str, int]] = {}
                pipe.multi()
                for (programme_id, citizen), key, mark, raw in zip(citizens, settled_keys, marks, olds, strict=True):
                    if mark is None:
                        continue  # settled meanwhile
                    new = corrections([summaries[c] for c in cases[(programme_id, citizen)] if c in summaries])
                    old = _corrections(raw)
                    for series, family, day, field in old.keys() | new.keys():
                        at = (series, family, day, field)
                        if change := new.get(at, 0) - old.get(at, 0):
                            sums = f"{namespace}:{SERIES[series](programme_id, family)}"
                            for name, name_field, amount in changes_on(sums, field, date.fromisoformat(day), change):
                                fields = changes.setdefault(name, {})
                                fields[name_field] = fields.get(name_field, 0) + amount
                    pipe.set(key, orjson.dumps(sorted([*k, v] for k, v in new.items())))
                if changes:
                    names = list(changes)
                    pipe.eval(_ADD_OR_DROP, len(names), *names, orjson.dumps([changes[n] for n in names]))
                forget = [
                    arg
                    for member, mark in zip(members, marks, strict=True)
                    if mark is not None
                    for arg in (member, int(mark))
                ]
                if forget:
                    pipe.eval(_FORGET_IF_UNCHANGED, 1, marks_key, *forget)
                pipe.execute()
                return
            except redis.WatchError:
                continue


def _referrals(
    reader: redis.Redis, namespace: str, citizens: list[tuple[str, ...]]
) -> dict[tuple[str, ...], list[str]]:
    """Each (programme, citizen)'s referrals: a round trip per programme."""
    found: dict[tuple[str, ...], list[str]] = {}
    for programme_id in sorted({p for p, _ in citizens}):
        ids = [c for p, c in citizens if p == programme_id]
        found |= {(programme_id, c): cases for c, cases in referrals_of(reader, namespace, programme_id, ids).items()}
    return found


Corrections = dict[tuple[str, str, str, str], int]  # (series, family, ISO day, field) -> change on that day


def corrections(referrals: list[ReferralSummary]) -> Corrections:
    """Both of a citizen's corrections, each keyed by its series (``SERIES``)."""
    status = {("status", *k): v for k, v in correction_steps(referrals).items()}
    return status | {("success", *k): v for k, v in criteria_correction_steps(referrals).items()}


def _corrections(raw: bytes | str | None) -> Corrections:
    return {(series, family, day, field): n for series, family, day, field, n in orjson.loads(raw)} if raw else {}
