"""The marshmallow schema of every stored event type, versioned, and the registry built from them.

To change a stored schema: bump ``version`` in ``REGISTRY.register`` and add an
upcaster from the previous version. Never edit what a stored version means.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, post_load, validate

from shared.domain import events as ev
from shared.events.envelope import DomainEvent
from shared.events.registry import EventRegistry

_ID = validate.Regexp(r"^[a-z0-9][a-z0-9-]{0,63}$", error="lowercase letters, digits and dashes")


class EventSchema(Schema):
    """A schema that loads into its event dataclass. Subclasses set ``event_class``."""

    event_class: type[DomainEvent]

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> DomainEvent:
        return self.event_class(**data)


class ReferralReceivedV1(EventSchema):
    event_class = ev.ReferralReceived
    programme_id = fields.String(required=True, validate=_ID)
    source = fields.String(required=True, validate=validate.Length(1, 64))
    consent_given = fields.Boolean(required=True)
    citizen_alias = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 100))
    cpr_fingerprint = fields.String(load_default=None, allow_none=True, validate=validate.Length(64, 64))
    birth_date = fields.Date(load_default=None, allow_none=True)


class AssessmentStartedV1(EventSchema):
    event_class = ev.AssessmentStarted


class ReferralDeclinedV1(EventSchema):
    event_class = ev.ReferralDeclined
    reason = fields.String(required=True, validate=validate.Length(1, 500))


class ReferralWithdrawnV1(EventSchema):
    event_class = ev.ReferralWithdrawn
    reason = fields.String(required=True, validate=validate.Length(1, 500))


def build_registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(ev.ReferralReceived, ReferralReceivedV1())
    registry.register(ev.AssessmentStarted, AssessmentStartedV1())
    registry.register(ev.ReferralDeclined, ReferralDeclinedV1())
    registry.register(ev.ReferralWithdrawn, ReferralWithdrawnV1())
    return registry


REGISTRY = build_registry()
