"""What intake accepts: marshmallow schemas for request bodies (not for stored events)."""

from __future__ import annotations

from datetime import date
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from shared.domain.calendar import EARLIEST_DATE, LATEST_PLANNING_DATE
from shared.domain.case import CLOSE_REASONS, CONTACT_KINDS, HOUSING_SITUATIONS, JOB_CENTRE_CATEGORIES
from shared.domain.cpr import InvalidCpr, parse_cpr
from shared.domain.programme import DANISH_LIFE_AREAS, METHODS
from shared.events.catalogue import SLUG
from shared.events.envelope import today

TEXT = validate.Length(1, 500)


class JsonBoolean(fields.Boolean):
    """JSON's true or false only. marshmallow's Boolean also takes "yes", "off", 1 and the like, and a consent
    or a fact about a citizen is not recorded from a guess at what a string meant."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class EventDate(fields.Date):
    """A Danish calendar date of something that has happened: not in the future, not absurdly old."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        day: date = super()._deserialize(value, attr, data, **kwargs)
        if day > today():
            raise ValidationError("must not be in the future")
        if day < EARLIEST_DATE:
            raise ValidationError(f"must be on or after {EARLIEST_DATE.isoformat()}")
        return day


class PlanningDate(fields.Date):
    """A programme's planning date: may be in the future, within reason."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        day: date = super()._deserialize(value, attr, data, **kwargs)
        if not EARLIEST_DATE <= day <= LATEST_PLANNING_DATE:
            raise ValidationError(f"must be between {EARLIEST_DATE.isoformat()} and {LATEST_PLANNING_DATE.isoformat()}")
        return day


def slug(**kwargs: Any) -> fields.String:
    return fields.String(validate=SLUG, **kwargs)


# -- referrals ----------------------------------------------------------------------------------------


class CitizenSchema(Schema):
    alias = fields.String(load_default=None, validate=validate.Length(1, 100))
    cpr = fields.String(load_default=None)
    birth_date = fields.Date(load_default=None)  # without a CPR number; with one, the number's date counts

    @validates("birth_date")
    def _plausible(self, value: date | None, **_: Any) -> None:
        if value is not None and not date(1900, 1, 1) <= value <= today():
            raise ValidationError("must be a past date after 1900")

    @validates("cpr")
    def _valid_cpr(self, value: str | None, **_: Any) -> None:
        if value is None:
            return
        try:
            parse_cpr(value)
        except InvalidCpr as e:
            raise ValidationError(str(e)) from None  # the message never repeats the number


class ConsentSchema(Schema):
    given = JsonBoolean(required=True)


class ReferralRequest(Schema):
    programme_id = slug(required=True)
    referred_on = EventDate(load_default=today)
    consent = fields.Nested(ConsentSchema, required=True)
    citizen = fields.Nested(CitizenSchema, load_default=dict)
    self_referral = JsonBoolean(load_default=False)

    @validates_schema(skip_on_field_errors=True)
    def _referred_after_birth(self, data: dict[str, Any], **_: Any) -> None:
        """The age band at referral is worked out from the two dates: one before the other has none."""
        citizen = data.get("citizen") or {}
        born = parse_cpr(citizen["cpr"]).birth_date if citizen.get("cpr") else citizen.get("birth_date")
        if born is not None and data["referred_on"] < born:
            raise ValidationError("is before the citizen's birth date", "referred_on")


class DatedRequest(Schema):
    on = EventDate(load_default=today)


class ReasonRequest(DatedRequest):
    reason = fields.String(required=True, validate=TEXT)


class ReferOnRequest(DatedRequest):
    to = fields.String(required=True, validate=TEXT)


# -- programmes ---------------------------------------------------------------------------------------


class PhaseSchema(Schema):
    name = slug(required=True)
    months = fields.Integer(required=True, validate=validate.Range(1, 24))


class ScaleSchema(Schema):
    areas = fields.List(slug(), load_default=lambda: list(DANISH_LIFE_AREAS), validate=validate.Length(1, 20))
    min = fields.Integer(load_default=1, validate=validate.Range(0, 100))
    max = fields.Integer(load_default=10, validate=validate.Range(1, 100))


class ProgrammeRequest(Schema):
    programme_id = slug(required=True)
    name = fields.String(required=True, validate=validate.Length(1, 200))
    methods = fields.List(fields.String(validate=validate.OneOf(METHODS)), required=True, validate=validate.Length(1))
    course_months = fields.Integer(required=True, validate=validate.Range(1, 60))
    phases = fields.List(fields.Nested(PhaseSchema), required=True, validate=validate.Length(1, 10))
    recruitment_start = PlanningDate(required=True)
    recruitment_end = PlanningDate(required=True)
    funding_end = PlanningDate(required=True)
    caseload_limit = fields.Integer(load_default=10, validate=validate.Range(1, 100))
    assessment_interval_months = fields.Integer(load_default=2, validate=validate.Range(1, 12))
    scale = fields.Nested(ScaleSchema, load_default=lambda: ScaleSchema().load({}))
    purposes = fields.List(slug(), load_default=lambda: ["improve_life_situation"], validate=validate.Length(1, 10))
    targets = fields.Dict(
        keys=fields.String(validate=validate.OneOf(METHODS)),
        values=fields.Integer(validate=validate.Range(0, 100_000)),
        load_default=dict,
    )

    @validates_schema
    def _consistent(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[str, list[str]] = {}
        if data["recruitment_end"] < data["recruitment_start"]:
            errors["recruitment_end"] = ["must not be before recruitment_start"]
        if data["funding_end"] < data["recruitment_end"]:
            errors["funding_end"] = ["must not be before recruitment_end"]
        if len({p["name"] for p in data["phases"]}) != len(data["phases"]):
            errors["phases"] = ["phase names must be unique"]
        if data["scale"]["min"] >= data["scale"]["max"]:
            errors["scale"] = ["min must be below max"]
        if errors:
            raise ValidationError(errors)


class ProgrammeChangeRequest(DatedRequest):
    recruitment_start = PlanningDate(load_default=None)
    recruitment_end = PlanningDate(load_default=None)
    funding_end = PlanningDate(load_default=None)
    caseload_limit = fields.Integer(load_default=None, validate=validate.Range(1, 100))

    @validates_schema
    def _something(self, data: dict[str, Any], **_: Any) -> None:
        if all(data.get(k) is None for k in ("recruitment_start", "recruitment_end", "funding_end", "caseload_limit")):
            raise ValidationError(
                "change at least one of recruitment_start, recruitment_end, funding_end, caseload_limit"
            )


class WorkerRequest(DatedRequest):
    worker_id = slug(required=True)
    method = fields.String(required=True, validate=validate.OneOf(METHODS))
    capacity = fields.Integer(load_default=None, validate=validate.Range(1, 100))


class CapacityRequest(DatedRequest):
    capacity = fields.Integer(required=True, allow_none=True, validate=validate.Range(1, 100))


# -- the course ---------------------------------------------------------------------------------------


class StarRequest(DatedRequest):
    scores = fields.Dict(keys=slug(), values=fields.Integer(strict=True), required=True)
    method = fields.String(load_default=None, validate=validate.OneOf(METHODS))


class Who5Request(DatedRequest):
    items = fields.List(
        fields.Integer(strict=True, validate=validate.Range(0, 5)), required=True, validate=validate.Length(5, 5)
    )


class PurposeRequest(DatedRequest):
    purpose = slug(required=True)


class GoalRequest(DatedRequest):
    goal_id = slug(load_default=None)
    life_area = slug(required=True)
    description = fields.String(required=True, validate=TEXT)


class GoalChangeRequest(DatedRequest):
    description = fields.String(load_default=None, validate=TEXT)


class ContactRequest(DatedRequest):
    kind = fields.String(required=True, validate=validate.OneOf(CONTACT_KINDS))


class HousingRequest(DatedRequest):
    situation = fields.String(required=True, validate=validate.OneOf(HOUSING_SITUATIONS))


class AddictionRequest(DatedRequest):
    in_treatment = JsonBoolean(required=True)


class JobCentreRequest(DatedRequest):
    category = fields.String(required=True, validate=validate.OneOf(JOB_CENTRE_CATEGORIES))


class PhaseRequest(DatedRequest):
    phase = slug(required=True)
    reason = fields.String(required=True, validate=TEXT)


class AssignmentRequest(DatedRequest):
    worker_id = slug(required=True)
    waitlist_if_full = JsonBoolean(load_default=False)


class CloseRequest(DatedRequest):
    reason = fields.String(required=True, validate=validate.OneOf(CLOSE_REASONS))


class ReopenRequest(DatedRequest):
    consent = fields.Nested(ConsentSchema, required=True)


class MatchDecisionRequest(DatedRequest):
    citizen_a = fields.String(required=True, validate=validate.Length(1, 100))
    citizen_b = fields.String(required=True, validate=validate.Length(1, 100))
    decision = fields.String(required=True, validate=validate.OneOf(("confirm", "reject")))


class ErasureRequest(DatedRequest):
    requested_by = fields.String(required=True, validate=validate.OneOf(("citizen", "representative", "municipality")))
