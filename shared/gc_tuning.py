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
def no_collections(freeze: bool = False) -> Iterator[None]:
    """No collection while a batch is read, folded and committed: its thousands of events, alive until it ends,
    would each be walked by a young collection and again by a middle one (the collector was 9 % of a caseflow
    worker's instructions; this saves 7). The batch's allocations still count, so the first allocation after it
    collects what is left: the documents it folded, with the events gone; with ``freeze`` (inside
    ``frozen_between_batches``, which says whether it may) what is left is frozen instead, and not walked at all.
    Nested, the outermost enables collections again."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        gc.enable()


@contextlib.contextmanager
def frozen_between_batches() -> Iterator[bool]:
    """For a run of batches (a worker's catch-up of a partition, a replay): what each batch leaves alive, the
    documents it folded, is frozen at the batch's end (``gc.freeze``, which moves the collector's lists whole)
    rather than walked by the young collection that follows it and the middle one after that, which were 5 % of
    a caseflow worker's time (docs/benchmarks.md, projection). At the run's end all is handed back to the oldest
    generation (``gc.unfreeze``): a cycle left by a batch is freed by a full collection then, not by the next
    young one. Yields whether the run's batches may freeze (``no_collections(freeze=...)``): not when the
    collector is off, or when something else froze objects (a server's preload), since unfreezing would hand
    back theirs too; not inside another such run, which unfreezes at its own end."""
    mine = gc.isenabled() and gc.get_freeze_count() == 0
    try:
        yield mine
    finally:
        if mine:
            gc.unfreeze()
