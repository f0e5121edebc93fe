"""The marshmallow schema of every stored event type, versioned, and the registry built from them.

To change a stored schema: bump ``version`` in ``register`` and add an upcaster
from the previous version. Never edit what a stored version means.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, post_load, validate

from shared.domain import events as ev
from shared.domain.programme import PHASED_METHODS
from shared.events.envelope import DomainEvent
from shared.events.registry import EventRegistry

SLUG = validate.Regexp(r"^[a-z0-9][a-z0-9_-]{0,63}$", error="lowercase letters, digits, dashes and underscores")
_TEXT = validate.Length(1, 500)
_SEALED = validate.Length(1, 4000)  # free text is stored sealed (see shared.vault): longer than what was typed
ROLES = ("referrer", "worker", "coordinator", "evaluator", "admin")


def _slug(**kwargs: Any) -> fields.String:
    return fields.String(validate=SLUG, **kwargs)


class EventSchema(Schema):
    """A schema that loads into its event dataclass. Subclasses set ``event_class``."""

    event_class: type[DomainEvent]

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> DomainEvent:
        return self.event_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def schema(event_class: type[DomainEvent], **declared: fields.Field[Any]) -> EventSchema:
    """Version 1 of an event's schema, from its fields."""
    cls = type(f"{event_class.__name__}V1", (EventSchema,), {"event_class": event_class, **declared})
    instance: EventSchema = cls()
    return instance


AGE_BANDS = ("under_18", "18_24", "25_plus")
REQUESTERS = ("citizen", "representative", "municipality")


def _referral_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 held alias and birth date in clear and knew no citizen id. v2 seals personal data, so a v1
    event is read without them (no release ever wrote v1 with real data); the case is its own citizen."""
    upcast = {k: v for k, v in data.items() if k not in ("citizen_alias", "birth_date")}
    return upcast | {"citizen_id": None, "age_band": None, "match_key": None}


def _enrolment_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 gave every course the phase plan's first phase. Only CTI runs in phases (``PHASED_METHODS``): an ICM
    or ACT course enrolled under v1 is read as v2 records it, with none (and the fold passes over the phase
    moves a scheduler appended to it then)."""
    return data if data["method"] in PHASED_METHODS else data | {"first_phase": None}


def build_registry() -> EventRegistry:
    r = EventRegistry()
    # programme-<id>
    r.register(
        ev.ProgrammeDefined,
        schema(
            ev.ProgrammeDefined,
            name=fields.String(required=True, validate=validate.Length(1, 200)),
            methods=fields.List(_slug(), required=True),
            course_months=fields.Integer(required=True),
            phases=fields.List(fields.Tuple((_slug(), fields.Integer())), required=True),
            recruitment_start=fields.Date(required=True),
            recruitment_end=fields.Date(required=True),
            funding_end=fields.Date(required=True),
            caseload_limit=fields.Integer(required=True),
            assessment_interval_months=fields.Integer(required=True),
            scale_areas=fields.List(_slug(), required=True),
            scale_min=fields.Integer(required=True),
            scale_max=fields.Integer(required=True),
            purposes=fields.List(_slug(), required=True),
            targets=fields.Dict(keys=_slug(), values=fields.Integer(), required=True),
        ),
    )
    r.register(
        ev.ProgrammeChanged,
        schema(
            ev.ProgrammeChanged,
            recruitment_start=fields.Date(load_default=None, allow_none=True),
            recruitment_end=fields.Date(load_default=None, allow_none=True),
            funding_end=fields.Date(load_default=None, allow_none=True),
            caseload_limit=fields.Integer(load_default=None, allow_none=True),
        ),
    )
    worker_capacity = {"capacity": fields.Integer(load_default=None, allow_none=True)}
    r.register(
        ev.WorkerJoined,
        schema(ev.WorkerJoined, worker_id=_slug(required=True), method=_slug(required=True), **worker_capacity),
    )
    r.register(
        ev.WorkerCapacityChanged, schema(ev.WorkerCapacityChanged, worker_id=_slug(required=True), **worker_capacity)
    )
    # case-<id>
    optional: dict[str, Any] = {"load_default": None, "allow_none": True}
    r.register(
        ev.ReferralReceived,
        schema(
            ev.ReferralReceived,
            programme_id=_slug(required=True),
            source=fields.String(required=True, validate=validate.Length(1, 64)),
            consent_given=fields.Boolean(required=True),
            citizen_id=fields.String(**optional),
            citizen_alias=fields.String(validate=_SEALED, **optional),
            birth_date=fields.String(validate=_SEALED, **optional),
            age_band=fields.String(validate=validate.OneOf(AGE_BANDS), **optional),
            cpr_fingerprint=fields.String(validate=validate.Length(64, 64), **optional),
            match_key=fields.String(validate=validate.Length(64, 64), **optional),
            reopened_from=fields.String(**optional),
        ),
        version=2,
        upcasters={1: _referral_v1_to_v2},
    )
    r.register(ev.AssessmentStarted, schema(ev.AssessmentStarted))
    r.register(ev.ReferralDeclined, schema(ev.ReferralDeclined, reason=fields.String(required=True, validate=_SEALED)))
    r.register(
        ev.ReferralWithdrawn, schema(ev.ReferralWithdrawn, reason=fields.String(required=True, validate=_SEALED))
    )
    r.register(ev.ReferredOn, schema(ev.ReferredOn, to=fields.String(required=True, validate=_SEALED)))
    r.register(
        ev.StarRecorded,
        schema(ev.StarRecorded, scores=fields.Dict(keys=_slug(), values=fields.Integer(), required=True)),
    )
    r.register(
        ev.CitizenEnrolled,
        schema(ev.CitizenEnrolled, method=_slug(required=True), first_phase=_slug(required=True, allow_none=True)),
        version=2,
        upcasters={1: _enrolment_v1_to_v2},
    )
    r.register(
        ev.PhaseEntered,
        schema(
            ev.PhaseEntered,
            phase=_slug(required=True),
            reason=fields.String(required=True, validate=_SEALED),
            scheduled=fields.Boolean(required=True),
        ),
    )
    r.register(ev.Who5Recorded, schema(ev.Who5Recorded, items=fields.List(fields.Integer(), required=True)))
    r.register(ev.PurposeRecorded, schema(ev.PurposeRecorded, purpose=_slug(required=True)))
    goal_id = {"goal_id": _slug(required=True)}
    description = {"description": fields.String(required=True, validate=_SEALED)}
    r.register(ev.GoalAdded, schema(ev.GoalAdded, life_area=_slug(required=True), **goal_id, **description))
    r.register(ev.GoalUpdated, schema(ev.GoalUpdated, **goal_id, **description))
    r.register(ev.GoalAchieved, schema(ev.GoalAchieved, **goal_id))
    r.register(ev.GoalDropped, schema(ev.GoalDropped, **goal_id))
    r.register(ev.ContactRecorded, schema(ev.ContactRecorded, kind=_slug(required=True)))
    r.register(ev.HousingChanged, schema(ev.HousingChanged, situation=_slug(required=True)))
    r.register(
        ev.AddictionTreatmentChanged, schema(ev.AddictionTreatmentChanged, in_treatment=fields.Boolean(required=True))
    )
    r.register(ev.JobCentreCategoryChanged, schema(ev.JobCentreCategoryChanged, category=_slug(required=True)))
    r.register(
        ev.CourseClosed,
        schema(
            ev.CourseClosed, reason=_slug(required=True), planned_end=fields.Date(load_default=None, allow_none=True)
        ),
        version=2,
        upcasters={1: lambda data: data},  # v1 kept no planned end: it loads as None (see ``discharged_early``)
    )
    r.register(ev.CourseReopened, schema(ev.CourseReopened, new_case_id=fields.String(required=True)))
    # caseload-<programme>
    case_and_worker = {"case_id": fields.String(required=True), "worker_id": _slug(required=True)}
    r.register(ev.CaseAssigned, schema(ev.CaseAssigned, via=_slug(required=True), **case_and_worker))
    r.register(ev.CaseReleased, schema(ev.CaseReleased, reason=_slug(required=True), **case_and_worker))
    r.register(
        ev.CaseWaitlisted,
        schema(
            ev.CaseWaitlisted, case_id=fields.String(required=True), method=_slug(load_default=None, allow_none=True)
        ),
        version=2,
        upcasters={1: lambda data: data},  # v1 kept no method: it loads as None, a wait for any slot
    )
    r.register(
        ev.WaitingForChanged,
        schema(ev.WaitingForChanged, case_id=fields.String(required=True), method=_slug(required=True)),
    )
    r.register(
        ev.CaseLeftWaitlist,
        schema(ev.CaseLeftWaitlist, case_id=fields.String(required=True), reason=_slug(required=True)),
    )
    # partner-<id>
    r.register(
        ev.PartnerRegistered,
        schema(ev.PartnerRegistered, name=fields.String(required=True, validate=_TEXT), kind=_slug(required=True)),
    )
    r.register(
        ev.ApiKeyIssued,
        schema(
            ev.ApiKeyIssued,
            key_id=fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{16}$")),
            secret_hash=fields.String(required=True, validate=validate.Length(64, 64)),
            role=fields.String(required=True, validate=validate.OneOf(ROLES)),
            programme_id=_slug(load_default=None, allow_none=True),
            worker_id=_slug(load_default=None, allow_none=True),
            label=fields.String(required=True, validate=validate.Length(0, 200)),
        ),
    )
    r.register(ev.ApiKeyRevoked, schema(ev.ApiKeyRevoked, key_id=fields.String(required=True)))
    # citizens
    r.register(ev.CprLinked, schema(ev.CprLinked, citizen_id=fields.String(required=True)))
    r.register(
        ev.CitizenErased,
        schema(ev.CitizenErased, requested_by=fields.String(required=True, validate=validate.OneOf(REQUESTERS))),
    )
    pair = {"citizen_a": fields.String(required=True), "citizen_b": fields.String(required=True)}
    r.register(ev.MatchConfirmed, schema(ev.MatchConfirmed, **pair))
    r.register(ev.MatchRejected, schema(ev.MatchRejected, **pair))
    return r


REGISTRY = build_registry()
