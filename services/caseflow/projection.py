"""The caseflow projection: each case's current state, as intake and the workers' queries need it.

Case documents are keyed by case id (so owned by that case's partition); the
per-programme index of cases is a set, changed only by commutative adds.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.domain.case import Case, evolve
from shared.events import RecordedEvent
from shared.projections import ProjectionState


def case_doc_name(case_id: str) -> str:
    return f"case:{case_id}"


def programme_index_name(programme_id: str) -> str:
    return f"programme:{programme_id}:cases"


class CaseflowProjection:
    name = "caseflow"
    version = 1

    def apply(self, events: Sequence[RecordedEvent], state: ProjectionState) -> None:
        state.load_docs(case_doc_name(e.stream_id) for e in events if e.stream_id.startswith("case-"))
        for event in events:
            if not event.stream_id.startswith("case-"):
                continue
            name = case_doc_name(event.stream_id)
            doc = state.get_doc(name)
            before = Case.from_dict(doc) if doc else None
            after = evolve(before, event.stream_id, event.payload, event.occurred_on)
            if after.version != event.stream_position:
                raise RuntimeError(
                    f"{event.stream_id}: event {event.stream_position} applied to version {after.version - 1}"
                )
            state.put_doc(name, after.to_dict())
            if before is None:
                state.add(programme_index_name(after.programme_id), after.case_id)
