"""Every Redis key name in one place.

The event log's keys share the hash tag ``{log}`` so the append script touches
a single Redis Cluster slot. Projection keys are namespaced by projection name
and version, so a rebuild can write new keys beside the live ones.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LogKeys:
    prefix: str

    @property
    def layout_1_events(self) -> str:
        """Where an earlier version kept every event, in one global stream (see ``EarlierLayout``)."""
        return f"{self.prefix}:{{log}}:events"

    @property
    def position(self) -> str:
        return f"{self.prefix}:{{log}}:position"

    @property
    def event_ids(self) -> str:
        """Hash event id -> global position, for idempotent appends."""
        return f"{self.prefix}:{{log}}:event-ids"

    @property
    def meta(self) -> str:
        return f"{self.prefix}:{{log}}:meta"

    def stream(self, stream_id: str) -> str:
        """List of the global positions of one stream's events, in stream order."""
        return f"{self.prefix}:{{log}}:stream:{stream_id}"

    def partition(self, partition: int) -> str:
        """The events of one partition's streams: a Redis Stream whose entry id ``<pos>-0`` is the event's global
        position. The log in global order is these streams merged by position."""
        return f"{self.prefix}:{{log}}:partition:{partition}"

    def idempotency(self, scope: str, key: str) -> str:
        return f"{self.prefix}:{{log}}:idempotency:{scope}:{key}"


@dataclass(frozen=True)
class ProjectionKeys:
    prefix: str
    projection: str

    @property
    def namespace_root(self) -> str:
        """What every version and generation of this read model's namespace starts with."""
        return f"{self.prefix}:proj:{self.projection}:v"

    def namespace(self, version: int, generation: int = 0) -> str:
        """Where one generation of one version of the read model lives. A rebuild writes a new generation."""
        return f"{self.prefix}:proj:{self.projection}:v{version}:g{generation}"

    def active_generation(self, version: int) -> str:
        return f"{self.prefix}:proj:{self.projection}:v{version}:active"

    def generations(self, version: int) -> str:
        """A counter, so concurrent rebuilds never pick the same new generation."""
        return f"{self.prefix}:proj:{self.projection}:v{version}:generations"

    @staticmethod
    def checkpoint(namespace: str, partition: int) -> str:
        return f"{namespace}:checkpoint:{partition}"

    @staticmethod
    def damage(namespace: str) -> str:
        """A hash, per partition, of the batch whose commit Redis applied only in part (see ``PartlyCommitted``):
        set, the read model is wrong until a rebuild writes a new generation, which has none."""
        return f"{namespace}:damage"

    @staticmethod
    def lease(namespace: str, partition: int) -> str:
        return f"{namespace}:lease:{partition}"

    def nudge_pending(self, partition: int) -> str:
        """Set while a catch-up job for the partition waits in its queue (jobs pick the live version). Under the
        log's hash tag: an append sets it in the same script (see ``shared.nudges``)."""
        return f"{self.prefix}:{{log}}:nudge-pending:{self.projection}:{partition}"
