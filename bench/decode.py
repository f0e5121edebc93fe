"""Decoding the log, with Redis left out: every entry of the workload's log read once into memory, then turned
into events (``EventStore._decode``, with each event's date) again and again, timed in process time.

    .venv/bin/python bench/decode.py --citizens 8000

Measure 2's "read and decode" includes the XRANGE; on this shared machine its figure moves by a third from one
run to the next, more than a change to decoding moves it. Left alone in one process, decoding moves far less,
so a change to it is measured here: run this script on the code before and after (``git worktree``) on the same
seeded log. Prints microseconds per event, the best of ``--repeat`` passes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import workload_log
from shared.eventstore import EventStore
from shared.redis_values import StoredEntries


def decode_all(store: EventStore, entries: StoredEntries) -> float:
    """Process seconds to decode every entry once, each event's date included (every projection reads it)."""
    started = time.process_time()
    for entry_id, fields in entries:
        store._decode(entry_id, fields).occurred_on  # noqa: B018 (read for its cost)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--citizens", type=int, default=8_000, help="about twelve events per citizen")
    parser.add_argument("--repeat", type=int, default=10, help="keep the best of this many passes")
    args = parser.parse_args()
    with workload_log(args.citizens) as (_, store, _, _):
        entries = [entry for batch in store.scan_stored(0, None) for entry in batch]
    best = min(decode_all(store, entries) for _ in range(args.repeat))
    result = {"events": len(entries), "decode_us_per_event": round(best / len(entries) * 1e6, 2)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
