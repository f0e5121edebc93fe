"""Versioned event schemas and the upcaster path that keeps old events readable.

Each event type has a current schema version. When a schema changes, bump the
version and register an upcaster from the old version to the next one; stored
events are never rewritten, they are upcast when read.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
from marshmallow import Schema, ValidationError

from shared.events.envelope import DomainEvent

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
        (dates as ISO 8601, tuples as arrays: what its schema's dump gives, in a tenth of the time), and the
        schema validates that JSON as it will be loaded, so no event its own schema refuses reaches the log."""
        event_type = self._by_class.get(type(event))
        if event_type is None:
            raise UnknownEventType(type(event).__name__)
        payload = orjson.dumps(event)
        if errors := event_type.schema.validate(orjson.loads(payload)):
            raise InvalidEvent(f"{event_type.name}: {errors}")
        return event_type.name, event_type.version, payload

    def load(self, name: str, version: int, data: dict[str, Any], validate: bool = False) -> DomainEvent:
        """Upcast a stored payload to the current version. Current-version events were validated when written,
        so they are built directly (``validate=True`` re-checks them, as ``log verify`` does); older versions
        are upcast and validated."""
        return self.load_type(self.event_type(name), version, data, validate)

    def event_type(self, name: str) -> EventType:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownEventType(name) from None

    def load_type(
        self, event_type: EventType, version: int, data: dict[str, Any], validate: bool = False
    ) -> DomainEvent:
        """As ``load``, for an event type already looked up."""
        name = event_type.name
        if version == event_type.version and not validate:
            try:
                return _build(event_type.event_class, data)
            except (KeyError, TypeError, ValueError) as e:
                raise CorruptEvent(f"{name} v{version}: {type(e).__name__}") from None
        if version > event_type.version:
            raise ValueError(f"{name} v{version} is newer than this code knows (v{event_type.version})")
        for from_version in range(version, event_type.version):
            data = event_type.upcasters[from_version](data)
        try:
            loaded: DomainEvent = event_type.schema.load(data)
        except ValidationError as e:
            raise CorruptEvent(f"{name} v{version}: {e.messages}") from None
        return loaded


def _build(cls: type[DomainEvent], data: dict[str, Any]) -> DomainEvent:
    """An event dataclass from its stored JSON: dates from ISO strings, lists as tuples.

    A stored payload holds exactly its class's fields (orjson wrote them all), so the object is built as
    ``RecordedEvent.from_log`` builds the envelope, without the frozen class's per-field ``__setattr__``: a
    million events are read at a time. Any other set of fields goes through the constructor, which fills
    defaults and refuses what the class does not know. The attributes are set in the fields' order, as the
    constructor sets them (events written by an earlier encoder stored them in their schema's order)."""
    names, converters = _fields(cls)
    if converters:
        data = dict(data)  # the caller's dict stays as stored
        for name, convert in converters:
            if (value := data.get(name)) is not None:
                data[name] = convert(value)
    if tuple(data) != names:
        if data.keys() != set(names):
            return cls(**data)
        data = {name: data[name] for name in names}
    event = object.__new__(cls)
    event.__dict__.update(data)
    return event


_FIELDS: dict[type[DomainEvent], tuple[tuple[str, ...], tuple[tuple[str, Callable[[Any], Any]], ...]]] = {}


def _fields(cls: type[DomainEvent]) -> tuple[tuple[str, ...], tuple[tuple[str, Callable[[Any], Any]], ...]]:
    """A class's field names in order, and how to turn each stored field that JSON cannot hold as is back into
    its type; worked out once per event class."""
    if cls not in _FIELDS:
        hints = typing.get_type_hints(cls)
        converters: list[tuple[str, Callable[[Any], Any]]] = []
        for spec in dataclasses.fields(cls):
            text = str(hints[spec.name])
            if "datetime.date" in text:
                converters.append((spec.name, date.fromisoformat))
            elif text.startswith("tuple[tuple"):
                converters.append((spec.name, lambda v: tuple(tuple(x) for x in v)))
            elif text.startswith("tuple"):
                converters.append((spec.name, tuple))
        _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls)), tuple(converters)
    return _FIELDS[cls]
