"""The event envelope: what every event carries besides its domain payload."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from shared.ids import random_uuid

COPENHAGEN = ZoneInfo("Europe/Copenhagen")


@dataclass(frozen=True)
class DomainEvent:
    """Base class of every payload. Subclasses are frozen dataclasses registered with a schema."""


@dataclass(frozen=True)
class NewEvent:
    """An event about to be appended; the log assigns its positions."""

    stream_id: str
    payload: DomainEvent
    occurred_at: datetime
    actor: str
    event_id: str = field(default_factory=random_uuid)
    metadata: dict[str, Any] = field(default_factory=dict)


# Envelope fields a projection never reads (it folds by stream, position, payload and date): the log's reader
# leaves them stored, and an event decodes them on first read. A sixth of decoding an event, which is a third
# of a caseflow worker's time.
DEFERRED = frozenset({"event_id", "recorded_at", "actor", "metadata"})


@dataclass(frozen=True)
class RecordedEvent:
    """An event as read back from the log, upcast to the current schema version."""

    event_id: str
    event_type: str
    schema_version: int
    stream_id: str
    stream_position: int
    global_position: int
    occurred_at: datetime
    recorded_at: datetime
    actor: str
    payload: DomainEvent
    metadata: dict[str, Any]

    @classmethod
    def from_log(cls, fields: dict[str, Any]) -> RecordedEvent:
        """As the constructor, without its per-field ``object.__setattr__`` (a frozen class's price): the log
        is read a million events at a time. ``fields`` are the constructor's (those of ``DEFERRED`` may instead be
        given as ``"_deferred": (decode, *stored)``, decode(*stored) giving them), and ``occurred_on``,
        which the reader works out with ``occurred_at`` (``shared.eventstore``): nearly every reader reads it,
        and on Python 3.11 a cached_property takes a lock on its first read, which cost as much as the date
        itself. (So an event read from the log holds it in its __dict__ from the start, one built in code once
        it is read.)"""
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", fields)
        return event

    if not TYPE_CHECKING:  # mypy would take any attribute for one of these

        def __getattr__(self, name: str) -> Any:
            """An envelope field the log's reader left to decode on first read (``DEFERRED``). Two threads may
            both decode: they set the same values."""
            fields = self.__dict__
            if name in DEFERRED:
                if (deferred := fields.get("_deferred")) is not None:
                    decode, *stored = deferred
                    fields.update(decode(*stored))
                    fields.pop("_deferred", None)
                if name in fields:
                    return fields[name]
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @cached_property
    def occurred_on(self) -> date:
        """The Danish calendar date the event happened on: what reports count by."""
        return danish_date(self.occurred_at)


def danish_date(instant: datetime) -> date:
    return instant.astimezone(COPENHAGEN).date()


def today() -> date:
    """Today's Danish calendar date: a server runs on UTC, and from midnight to one or two in the morning in
    Copenhagen its own date is yesterday's."""
    return datetime.now(COPENHAGEN).date()


def start_of_day(day: date) -> datetime:
    """Midnight in Copenhagen: the instant used when only the date of an event is known."""
    return datetime(day.year, day.month, day.day, tzinfo=COPENHAGEN)
