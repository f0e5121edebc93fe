"""Versioned event schemas and the upcaster path that keeps old events readable.

Each event type has a current schema version. When a schema changes, bump the
version and register an upcaster from the old version to the next one; stored
events are never rewritten, they are upcast when read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
from marshmallow import Schema, ValidationError

from shared.events.envelope import DomainEvent
from shared.lean_load import LeanLoad

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownEventType(LookupError):
    pass


class InvalidEvent(ValueError):
    """Code tried to append an event its own schema refuses: a bug, refused before it reaches the log."""


class CorruptEvent(RuntimeError):
    """A stored event no longer passes its schema: a bug in an upcaster or a log written by other code."""


@dataclass
class EventType:
    name: str
    version: int
    event_class: type[DomainEvent]
    schema: Schema
    upcasters: dict[int, Upcaster] = field(default_factory=dict)
    # A current-version payload is read by msgspec, straight from its stored JSON into the class, types checked.
    reader: msgspec.json.Decoder[Any] = field(init=False, repr=False)
    field_names: tuple[str, ...] = field(init=False, repr=False)
    check: LeanLoad = field(init=False, repr=False)  # the schema's validate, its success path lean

    def __post_init__(self) -> None:
        self.reader = msgspec.json.Decoder(self.event_class)
        self.field_names = tuple(f.name for f in dataclasses.fields(self.event_class))
        self.check = LeanLoad(self.schema)

    def refusals(self, payload: dict[str, Any]) -> dict[str, Any]:
        """What the schema refuses in a payload of this class, as ``Schema.validate`` says it (``shared.lean_load``:
        a referral's event in 3 us rather than the schema's 12)."""
        return self.check.refusals(payload)


class EventRegistry:
    def __init__(self) -> None:
        self._by_name: dict[str, EventType] = {}
        self._by_class: dict[type[DomainEvent], EventType] = {}

    def register(
        self,
        event_class: type[DomainEvent],
        schema: Schema,
        *,
        version: int = 1,
        upcasters: dict[int, Upcaster] | None = None,
    ) -> None:
        """Register an event type. ``upcasters[n]`` turns a version-n payload into version n+1."""
        upcasters = upcasters or {}
        missing = [v for v in range(1, version) if v not in upcasters]
        if missing:
            raise ValueError(f"{event_class.__name__}: no upcaster from version(s) {missing}")
        event_type = EventType(event_class.__name__, version, event_class, schema, upcasters)
        self._by_name[event_type.name] = event_type
        self._by_class[event_class] = event_type

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def encode(self, event: DomainEvent) -> tuple[str, int, bytes]:
        """The type name, current schema version and stored JSON of an event. orjson writes the dataclass itself
        (dates as ISO 8601, tuples as arrays: what its schema's dump gives, in a tenth of the time); the schema
        validates that JSON as it will be loaded (``EventType.refusals``), and the log's reader reads it (stricter
        on types than the schema: 3.0 or "3" for an integer), so no event that either refuses reaches the log."""
        event_type = self._by_class.get(type(event))
        if event_type is None:
            raise UnknownEventType(type(event).__name__)
        payload = orjson.dumps(event)
        if errors := event_type.refusals(orjson.loads(payload)):
            raise InvalidEvent(f"{event_type.name}: {errors}")
        try:
            event_type.reader.decode(payload)
        except msgspec.MsgspecError as e:
            raise InvalidEvent(f"{event_type.name}: {e}") from None
        return event_type.name, event_type.version, payload

    def event_type(self, name: str) -> EventType:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownEventType(name) from None

    def load(self, name: str, version: int, stored: bytes | str, validate: bool = False) -> DomainEvent:
        """An event's payload from its stored JSON, upcast to the current version.

        Current-version events were validated by their schema and read back when written, so msgspec reads them
        straight into their class, checking each field's type (``validate=True`` checks them against the schema
        too, as ``log verify`` does: msgspec passes over a field the class does not have, the schema refuses it);
        older versions are upcast and validated."""
        return self.load_type(self.event_type(name), version, stored, validate)

    def load_type(
        self, event_type: EventType, version: int, stored: bytes | str, validate: bool = False
    ) -> DomainEvent:
        """As ``load``, for an event type already looked up (the log's reader, once per event)."""
        name = event_type.name
        if version > event_type.version:
            raise ValueError(f"{name} v{version} is newer than this code knows (v{event_type.version})")
        if version == event_type.version:
            try:
                payload: DomainEvent = event_type.reader.decode(stored)
            except msgspec.MsgspecError as e:  # names the field and the types, never the value
                raise CorruptEvent(f"{name} v{version}: {e}") from None
            if not validate:
                if tuple(payload.__dict__) != event_type.field_names:
                    return _as_constructed(payload, event_type.field_names)
                return payload
        data = orjson.loads(stored)
        for from_version in range(version, event_type.version):
            data = event_type.upcasters[from_version](data)
        try:
            loaded: DomainEvent = event_type.schema.load(data)
        except ValidationError as e:
            raise CorruptEvent(f"{name} v{version}: {e.messages}") from None
        return loaded


def _as_constructed(payload: DomainEvent, names: tuple[str, ...]) -> DomainEvent:
    """The payload with the attributes its constructor sets: every field, in the class's order. msgspec sets those
    the stored JSON holds, in its order: an earlier encoder stored its schema's order, and an event stored before
    a field with a default was added lacks it (read from the class, but missing from ``vars`` and from orjson's
    rendering of the object)."""
    built = object.__new__(type(payload))
    built.__dict__.update({name: getattr(payload, name) for name in names})
    return built
