"""What intake accepts: marshmallow schemas for request bodies (not for stored events)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates

from shared.domain.cpr import InvalidCpr, parse_cpr
from shared.events.envelope import COPENHAGEN

EARLIEST_DATE = date(2000, 1, 1)


def today() -> date:
    return datetime.now(COPENHAGEN).date()


class EventDate(fields.Date):
    """A Danish calendar date of something that has happened: not in the future, not absurdly old."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        day: date = super()._deserialize(value, attr, data, **kwargs)
        if day > today():
            raise ValidationError("must not be in the future")
        if day < EARLIEST_DATE:
            raise ValidationError(f"must be on or after {EARLIEST_DATE.isoformat()}")
        return day


class CitizenSchema(Schema):
    alias = fields.String(load_default=None, validate=validate.Length(1, 100))
    cpr = fields.String(load_default=None)

    @validates("cpr")
    def _valid_cpr(self, value: str | None, **_: Any) -> None:
        if value is None:
            return
        try:
            parse_cpr(value)
        except InvalidCpr as e:
            raise ValidationError(str(e)) from None  # the message never repeats the number


class ConsentSchema(Schema):
    given = fields.Boolean(required=True)


class ReferralRequest(Schema):
    programme_id = fields.String(required=True, validate=validate.Regexp(r"^[a-z0-9][a-z0-9-]{0,63}$"))
    referred_on = EventDate(load_default=today)
    consent = fields.Nested(ConsentSchema, required=True)
    citizen = fields.Nested(CitizenSchema, load_default=dict)
    self_referral = fields.Boolean(load_default=False)


class DatedRequest(Schema):
    on = EventDate(load_default=today)


class ReasonRequest(DatedRequest):
    reason = fields.String(required=True, validate=validate.Length(1, 500))
