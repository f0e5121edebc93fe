"""Loading an aggregate: fold its stream from the log. Used by intake and by caseflow's policy jobs.

``Folds`` keeps, per process, the folds of the streams a service reads again
and again (programmes, caseloads, partners, recent cases) and brings each up to
date by reading only the events appended since it was folded: one round trip for
several streams, and usually nothing to read. Every value held is the fold of a
prefix of its stream, so reading on from its version is always right; that is
why it needs no invalidation, only a check that the log is still the same one
(its identity comes with every read; a store restored or flushed under a
running service is another log).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Generic, TypeVar

from shared.domain.access import Partner, evolve_partner, partner_stream
from shared.domain.case import Case, evolve
from shared.domain.caseload import Caseload, caseload_stream, evolve_caseload
from shared.domain.identity import Identity, citizen_stream, evolve_identity, identity_stream
from shared.domain.programme import Programme, evolve_programme
from shared.events import DomainEvent, RecordedEvent
from shared.eventstore import AppendResult, EventStore

T = TypeVar("T")
MAX_HELD = 20_000  # folds one process keeps; beyond, the first folded are dropped (re-read when next needed)


class NotFound(Exception):
    pass


def programme_stream(programme_id: str) -> str:
    return f"programme-{programme_id}"


@dataclass(frozen=True)
class Fold(Generic[T]):
    """How one stream folds: its id, the value before its first event, and one event's step."""

    stream_id: str
    initial: T
    step: Callable[[T, DomainEvent, date], T]


def case_fold(case_id: str) -> Fold[Case | None]:
    return Fold(case_id, None, lambda case, event, on: evolve(case, case_id, event, on))


def programme_fold(programme_id: str) -> Fold[Programme | None]:
    return Fold(
        programme_stream(programme_id),
        None,
        lambda programme, event, _: evolve_programme(programme, programme_id, event),
    )


def caseload_fold(programme_id: str) -> Fold[Caseload]:
    return Fold(caseload_stream(programme_id), Caseload(programme_id), evolve_caseload)


def partner_fold(partner_id: str) -> Fold[Partner | None]:
    return Fold(partner_stream(partner_id), None, lambda partner, event, _: evolve_partner(partner, partner_id, event))


def identity_fold(programme_id: str) -> Fold[Identity]:
    return Fold(identity_stream(programme_id), Identity(), lambda identity, event, _: evolve_identity(identity, event))


def fold_of(stream_id: str) -> Fold[Any] | None:
    """How a stream a command writes folds, for the streams services hold folds of."""
    for prefix, fold in (("case-", case_fold), ("caseload-", caseload_fold), ("programme-", programme_fold)):
        if stream_id.startswith(prefix):
            return fold(stream_id if prefix == "case-" else stream_id.removeprefix(prefix))
    return None


def load_case(store: EventStore, case_id: str) -> Case:
    return found(fold_whole(store, case_fold(case_id)), "no such case")


def load_cases(store: EventStore, case_ids: Iterable[str]) -> dict[str, Case]:
    """Several cases, in one round trip."""
    streams = store.read_streams(dict.fromkeys(case_ids, 0)).events
    return {case_id: found(folded(case_fold(case_id), events), "no such case") for case_id, events in streams.items()}


def load_programme(store: EventStore, programme_id: str) -> Programme:
    return found(fold_whole(store, programme_fold(programme_id)), "no such programme")


def load_caseload(store: EventStore, programme_id: str) -> Caseload:
    return fold_whole(store, caseload_fold(programme_id))


def load_identity(store: EventStore, programme_id: str) -> Identity:
    """Which of a programme's citizen records coordinators confirmed (or rejected) as one person."""
    return fold_whole(store, identity_fold(programme_id))


def erased_records(store: EventStore, citizen_ids: Iterable[str]) -> set[str]:
    """The citizen records among these that were erased: the log holds the erasure in the record's own stream."""
    ids = list(citizen_ids)
    versions = store.stream_versions(citizen_stream(c) for c in ids)
    return {c for c in ids if versions[citizen_stream(c)] > 0}


def fold_whole(store: EventStore, fold: Fold[T]) -> T:
    return folded(fold, store.read_stream(fold.stream_id))


def folded(fold: Fold[T], events: Iterable[RecordedEvent]) -> T:
    value = fold.initial
    for event in events:
        value = fold.step(value, event.payload, event.occurred_on)
    return value


def found(value: T | None, message: str) -> T:
    if value is None:
        raise NotFound(message)
    return value


class Folds:
    def __init__(self, store: EventStore, max_held: int = MAX_HELD) -> None:
        self.store = store
        self._held: dict[str, tuple[int, Any]] = {}  # stream -> (version, value folded up to it)
        self._max_held = max_held
        self._lock = threading.Lock()  # a threaded server's requests share the folds
        self._log_id = store.log_id

    def current(self, *folds: Fold[Any], at: AppendResult | None = None) -> list[Any]:
        """Each stream's value as the log has it now (one round trip for all of them).

        ``at``: or as an append of this log left them, when every one is held at the version it reports
        (the answer to a command is the state the command made: nothing to read)."""
        held = [self._held.get(f.stream_id, (0, f.initial)) for f in folds]
        if (
            at is not None
            and at.log_id == self._log_id
            and all(at.versions_at_append.get(f.stream_id) == v for f, (v, _) in zip(folds, held, strict=True))
        ):
            return [value for _, value in held]
        fresh = self.store.read_streams({f.stream_id: version for f, (version, _) in zip(folds, held, strict=True)})
        if fresh.log_id != self._log_id:  # another log restored into this Redis, or a flushed one: start again
            with self._lock:
                self._held.clear()
                self._log_id = fresh.log_id
            return self.current(*folds)
        values = []
        for fold, (version, value) in zip(folds, held, strict=True):
            events = fresh.events[fold.stream_id]
            for event in events:
                value = fold.step(value, event.payload, event.occurred_on)
            self._hold(fold.stream_id, version + len(events), value)
            values.append(value)
        return values

    def held(self, fold: Fold[T], empty_is_an_answer: bool = False) -> tuple[int, T]:
        """The value as this process last saw it, without asking the log (read it if never seen or seen empty).
        Only for a decision whose append checks this version still holds (a read-check), so stale is never
        wrong. An empty stream is read again: a refusal for want of it (no such programme, no such case) has no
        append to check it, and another process may have written it since. Not with ``empty_is_an_answer``, for
        a stream whose emptiness refuses nothing (a caseload with no one in it yet)."""
        version, value = self._held.get(fold.stream_id, (0, fold.initial))
        if version == 0 and not (empty_is_an_answer and fold.stream_id in self._held):
            self.current(fold)
            version, value = self._held.get(fold.stream_id, (0, fold.initial))  # a pair, even if a thread moved it
        return version, value

    def appended(self, fold: Fold[Any], expected_version: int, events: Sequence[DomainEvent], on: date) -> None:
        """A successful append of ``events`` at ``expected_version``: the stream is now exactly what is held
        plus these, so they are folded in without reading them back."""
        version, value = self._held.get(fold.stream_id, (0, fold.initial))
        if version == expected_version:
            for event in events:
                value = fold.step(value, event, on)
            self._hold(fold.stream_id, version + len(events), value)

    def forget(self, stream_id: str) -> None:
        with self._lock:
            self._held.pop(stream_id, None)

    def _hold(self, stream_id: str, version: int, value: Any) -> None:
        """Keep a fold, unless a racing thread holds a later one already: a decision on a held fold (``held``)
        must never see the log as it was before what this process has read (an older programme would refuse
        what a funding extension allows, and a refusal has no append to check it)."""
        with self._lock:
            held = self._held.pop(stream_id, None)  # re-inserted last: the first folded are the first dropped
            self._held[stream_id] = held if held is not None and held[0] > version else (version, value)
            if len(self._held) > self._max_held:
                for stale in list(self._held)[: len(self._held) - self._max_held // 2]:
                    del self._held[stale]
