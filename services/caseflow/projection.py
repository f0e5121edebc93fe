"""The caseflow projection: every programme, case and caseload folded into a document, for queries.

Each document is keyed by its stream (so owned by that stream's partition) and
carries the stream version it was folded to; a version that does not match the
event's stream position means an event applied twice or skipped, and stops the
batch. The sets of programmes and of each programme's cases only grow, by
commutative adds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import redis

from shared.domain.case import Case, evolve
from shared.domain.caseload import Caseload, caseload_from_doc, caseload_to_doc, evolve_caseload
from shared.domain.programme import evolve_programme, programme_from_doc, programme_to_doc
from shared.events import DomainEvent, RecordedEvent
from shared.projections import ProjectionState

PROGRAMMES = "programmes"


def case_doc_name(case_id: str) -> str:
    return f"case:{case_id}"


def programme_doc_name(programme_id: str) -> str:
    return f"programme:{programme_id}"


def caseload_doc_name(programme_id: str) -> str:
    return f"caseload:{programme_id}"


def programme_index_name(programme_id: str) -> str:
    return f"programme:{programme_id}:cases"


def citizen_index_name(citizen_id: str) -> str:
    return f"citizen:{citizen_id}:cases"


@dataclass(frozen=True)
class StreamKind:
    """How one kind of stream is folded: its document, its object, event by event, and back to its document."""

    prefix: str
    doc_name: Callable[[str], str]
    from_doc: Callable[[dict[str, Any]], Any]
    initial: Callable[[str], Any]  # before the stream's first event
    evolve: Callable[[Any, str, DomainEvent, date], Any]
    to_doc: Callable[[Any], Any]  # what orjson writes: a dict, or a dataclass it writes as it is


KINDS = (
    StreamKind("case-", case_doc_name, Case.from_stored, lambda _: None, evolve, lambda case: case),  # see from_stored
    StreamKind(
        "programme-",
        programme_doc_name,
        programme_from_doc,
        lambda _: None,
        lambda programme, pid, event, _: evolve_programme(programme, pid, event),
        programme_to_doc,
    ),
    StreamKind(
        "caseload-",
        caseload_doc_name,
        caseload_from_doc,
        Caseload,
        lambda caseload, _, event, on: evolve_caseload(caseload, event, on),
        caseload_to_doc,
    ),
)
_BY_DOC_PREFIX = {kind.doc_name(""): kind for kind in KINDS}


def _from_doc(name: str, doc: dict[str, Any]) -> Any:
    """A stored document back into the object it was folded as (a document name says its kind)."""
    return _BY_DOC_PREFIX[name[: name.index(":") + 1]].from_doc(doc)


NOT_PROJECTED = ("partner-", "cpr-", "citizen-", "identity-")  # read where needed by folding the stream itself


def kind_of(stream_id: str) -> tuple[StreamKind, str] | None:
    """How a stream is folded, and the key of its document (None: a stream caseflow does not project)."""
    if stream_id.startswith(NOT_PROJECTED):
        return None
    for kind in KINDS:
        if stream_id.startswith(kind.prefix):
            return kind, stream_id if kind.prefix == "case-" else stream_id[len(kind.prefix) :]
    raise ValueError(f"no projection rule for stream {stream_id}")


@functools.lru_cache(maxsize=100_000)
def document_of(stream_id: str) -> tuple[StreamKind, str, str] | None:
    """``kind_of`` and the name of the stream's document, worked out once per stream: a worker meets the same
    streams batch after batch."""
    found = kind_of(stream_id)
    return None if found is None else (*found, found[0].doc_name(found[1]))


class CaseflowProjection:
    name = "caseflow"
    # 2: a closure voids the scheduler's phase moves dated after it; 3: ICM and ACT courses have no phases;
    # 4: a caseload keeps the method each waitlisted citizen waits for (rebuilt from the log on upgrade);
    # 5: a case is stored as orjson writes its dataclass (``Case.from_stored``)
    version = 5
    # Its batch's read and its commit each hold Redis under 5 ms (SLOWLOG, catching up a 247,740-event log); a
    # sixth faster than batches of 500.
    batch_size = 2_000

    def settle(self, connection: redis.Redis, namespace: str) -> int:
        return 0  # every document belongs to one stream's partition: nothing spans partitions

    def unsettled(self, connection: redis.Redis, namespace: str) -> bool:
        return False

    def apply(self, events: Sequence[RecordedEvent], state: ProjectionState) -> None:
        """Fold each event into its stream's object, held by the state, which writes each touched document
        once when it flushes."""
        documents = [document_of(e.stream_id) for e in events]
        state.load_docs((found[2] for found in documents if found), _from_doc)
        for event, found in zip(events, documents, strict=True):
            if found is None:
                continue
            kind, key, name = found
            before = state.get_doc(name, _from_doc)
            after = kind.evolve(
                before if before is not None else kind.initial(key), key, event.payload, event.occurred_on
            )
            if after.version != event.stream_position:
                raise RuntimeError(
                    f"{event.stream_id}: event {event.stream_position} applied to version {after.version - 1}"
                )
            state.put_doc(name, after, kind.to_doc)
            if before is None and kind.prefix == "case-":
                state.add(programme_index_name(after.programme_id), key)
                state.add(citizen_index_name(after.citizen_id), key)
            elif before is None and kind.prefix == "programme-":
                state.add(PROGRAMMES, key)
