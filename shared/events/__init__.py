"""Immutable events: the envelope, and the registry of versioned event schemas."""

from shared.events.envelope import DomainEvent, NewEvent, RecordedEvent
from shared.events.registry import EventRegistry, UnknownEventType

__all__ = ["DomainEvent", "EventRegistry", "NewEvent", "RecordedEvent", "UnknownEventType"]
