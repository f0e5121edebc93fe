"""The caseflow projection: every programme, case and caseload folded into a document, for queries.

Each document is keyed by its stream (so owned by that stream's partition) and
carries the stream version it was folded to; a version that does not match the
event's stream position means an event applied twice or skipped, and stops the
batch. The sets of programmes and of each programme's cases only grow, by
commutative adds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

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
    """How one kind of stream is folded: from its document, event by event, back to its document."""

    prefix: str
    doc_name: Callable[[str], str]
    from_doc: Callable[[dict[str, Any] | None, str], Any]
    evolve: Callable[[Any, str, DomainEvent, date], Any]
    to_doc: Callable[[Any], dict[str, Any]]


KINDS = (
    StreamKind(
        "case-",
        case_doc_name,
        lambda doc, _: Case.from_dict(doc) if doc else None,
        evolve,
        lambda case: case.to_dict(),
    ),
    StreamKind(
        "programme-",
        programme_doc_name,
        lambda doc, _: programme_from_doc(doc) if doc else None,
        lambda programme, pid, event, _: evolve_programme(programme, pid, event),
        programme_to_doc,
    ),
    StreamKind(
        "caseload-",
        caseload_doc_name,
        lambda doc, pid: caseload_from_doc(doc) if doc else Caseload(pid),
        lambda caseload, _, event, on: evolve_caseload(caseload, event, on),
        caseload_to_doc,
    ),
)


NOT_PROJECTED = ("partner-", "cpr-", "citizen-", "identity-")  # read where needed by folding the stream itself


def _kind(stream_id: str) -> tuple[StreamKind, str] | None:
    if stream_id.startswith(NOT_PROJECTED):
        return None
    for kind in KINDS:
        if stream_id.startswith(kind.prefix):
            return kind, stream_id if kind.prefix == "case-" else stream_id[len(kind.prefix) :]
    raise ValueError(f"no projection rule for stream {stream_id}")


class CaseflowProjection:
    name = "caseflow"
    version = 1

    def apply(self, events: Sequence[RecordedEvent], state: ProjectionState) -> None:
        """Fold each stream's events of the batch in memory, then write each touched document once."""
        kinds = [_kind(e.stream_id) for e in events]
        state.load_docs(found[0].doc_name(found[1]) for found in kinds if found)
        folded: dict[str, tuple[StreamKind, Any]] = {}
        for event, found in zip(events, kinds, strict=True):
            if found is None:
                continue
            kind, key = found
            name = kind.doc_name(key)
            before = folded[name][1] if name in folded else kind.from_doc(state.get_doc(name), key)
            after = kind.evolve(before, key, event.payload, event.occurred_on)
            if after.version != event.stream_position:
                raise RuntimeError(
                    f"{event.stream_id}: event {event.stream_position} applied to version {after.version - 1}"
                )
            folded[name] = (kind, after)
            if before is None and kind.prefix == "case-":
                state.add(programme_index_name(after.programme_id), key)
                state.add(citizen_index_name(after.citizen_id), key)
            elif before is None and kind.prefix == "programme-":
                state.add(PROGRAMMES, key)
        for name, (kind, value) in folded.items():
            state.put_doc(name, kind.to_doc(value))
