"""Immutable events: the envelope, and the registry of versioned event schemas."""

from shared.events.envelope import DomainEvent, NewEvent, RecordedEvent
from shared.events.registry import CorruptEvent, EventRegistry, InvalidEvent, UnknownEventType

__all__ = [
    "CorruptEvent",
    "DomainEvent",
    "EventRegistry",
    "InvalidEvent",
    "NewEvent",
    "RecordedEvent",
    "UnknownEventType",
]
