"""When the garbage collector walks the whole heap, in processes that fold the log.

A worker or a rebuild holds hundreds of thousands of folded documents between batches. CPython's
full collection walks every object alive, and under its default thresholds (700, 10, 10) it ran 26
times in one replay of 247,740 events: a third of the replay's time, to free 10 objects that sat in
reference cycles (docs/benchmarks-history.md, "Seventeenth session"). What these processes make is freed by
reference counting; young collections still run as often as before and catch the few cycles early,
except while a batch is read and folded (``no_collections``): then they wait for its end.

Written for CPython 3.11-3.13 (the image runs 3.11). CPython 3.14's incremental collector has no third
threshold: there this changes nothing, and the replay's time should be measured again.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# A full collection after this many collections of the middle generation (CPython's default: 10), and,
# as always, only once a quarter more objects have survived since the last one.
FULL_COLLECTION_AFTER = 1000


def make_full_collections_rare() -> None:
    """Make full collections rare for the rest of this process (and the processes it forks)."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_AFTER)


@contextlib.contextmanager
def no_collections() -> Iterator[None]:
    """No collection while a batch is read, folded and committed: its thousands of events, alive until it ends,
    would each be walked by a young collection and again by a middle one (the collector was 9 % of a caseflow
    worker's instructions; this saves 7). The batch's allocations still count, so the first allocation after it
    collects what is left: the documents it folded, with the events gone. Nested, the outermost enables
    collections again."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
