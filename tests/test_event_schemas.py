"""Event schemas and upcasting, with no Redis."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import fields

from shared.domain.events import CaseWaitlisted, CitizenEnrolled, CourseClosed, ReferralReceived
from shared.events import CorruptEvent, DomainEvent, EventRegistry, UnknownEventType
from shared.events.catalogue import REGISTRY, EventSchema


def dumped(event: DomainEvent, registry: EventRegistry = REGISTRY) -> tuple[str, int, dict[str, Any]]:
    """An event as the store writes it (``EventRegistry.encode``), its payload read back as a dict."""
    name, version, payload = registry.encode(event)
    return name, version, orjson.loads(payload)


def test_every_event_round_trips_through_its_schema() -> None:
    event = ReferralReceived("demo", "reden", True, "citizen-1", "sealed:v1:x", "sealed:v1:y", "18_24", "a" * 64)
    name, version, data = dumped(event)
    assert (name, version) == ("ReferralReceived", 2)
    assert REGISTRY.load(name, version, orjson.dumps(data)) == event


def test_a_v1_referral_is_read_as_v2_without_its_clear_personal_data() -> None:
    """v1 stored alias and birth date in clear; v2 seals them. Stored v1 events are upcast, never rewritten."""
    stored_v1 = {
        "programme_id": "demo",
        "source": "reden",
        "consent_given": True,
        "citizen_alias": "Maja",
        "cpr_fingerprint": None,
        "birth_date": "1990-01-01",
        "reopened_from": None,
    }
    upcast = REGISTRY.load("ReferralReceived", 1, orjson.dumps(stored_v1))
    assert upcast == ReferralReceived("demo", "reden", True)
    assert isinstance(upcast, ReferralReceived) and upcast.citizen_alias is None and upcast.citizen_id is None


def test_a_v1_enrolment_gives_a_phase_only_to_a_cti_course() -> None:
    """v1 gave ICM and ACT courses the phase plan's first phase too; only CTI runs in phases."""
    for method, first_phase in (("cti", "pre_cti"), ("icm", None), ("act", None)):
        upcast = REGISTRY.load("CitizenEnrolled", 1, orjson.dumps({"method": method, "first_phase": "pre_cti"}))
        assert upcast == CitizenEnrolled(method=method, first_phase=first_phase)
    name, version, data = dumped(CitizenEnrolled(method="icm", first_phase=None))
    assert (name, version) == ("CitizenEnrolled", 2)
    assert REGISTRY.load(name, version, orjson.dumps(data)) == CitizenEnrolled(method="icm", first_phase=None)


def test_a_v1_closure_is_read_without_a_planned_end() -> None:
    assert REGISTRY.load("CourseClosed", 1, orjson.dumps({"reason": "moved"})) == CourseClosed("moved", None)
    name, version, data = dumped(CourseClosed("moved", date(2016, 12, 31)))
    assert (version, data) == (2, {"reason": "moved", "planned_end": "2016-12-31"})
    assert REGISTRY.load(name, version, orjson.dumps(data)) == CourseClosed("moved", date(2016, 12, 31))


def test_a_v1_waitlisting_is_read_as_a_wait_for_any_slot() -> None:
    assert REGISTRY.load("CaseWaitlisted", 1, orjson.dumps({"case_id": "case-1"})) == CaseWaitlisted("case-1", None)
    name, version, data = dumped(CaseWaitlisted("case-1", "icm"))
    assert (version, data) == (2, {"case_id": "case-1", "method": "icm"})
    assert REGISTRY.load(name, version, orjson.dumps(data)) == CaseWaitlisted("case-1", "icm")


def test_a_stored_payload_that_breaks_its_schema_is_refused() -> None:
    with pytest.raises(CorruptEvent) as invalid:
        REGISTRY.load("ReferralReceived", 1, orjson.dumps({"programme_id": "Not A Slug", "source": "reden"}))
    assert "programme_id" in str(invalid.value) and "consent_given" in str(invalid.value)


@dataclass(frozen=True)
class GoalSet(DomainEvent):
    life_area: str
    text: str


class GoalSetV2(EventSchema):
    event_class = GoalSet
    life_area = fields.String(required=True)
    text = fields.String(required=True)


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 called the life area "area" and had no free text."""
    return {"life_area": data["area"], "text": data.get("text", "")}


def test_old_versions_are_upcast_when_read() -> None:
    registry = EventRegistry()
    registry.register(GoalSet, GoalSetV2(), version=2, upcasters={1: _v1_to_v2})
    assert registry.load("GoalSet", 1, orjson.dumps({"area": "housing"})) == GoalSet("housing", "")
    assert registry.load("GoalSet", 2, orjson.dumps({"life_area": "housing", "text": "x"})) == GoalSet("housing", "x")
    assert dumped(GoalSet("housing", "x"), registry)[1] == 2


def test_a_version_without_an_upcaster_cannot_be_registered() -> None:
    with pytest.raises(ValueError, match="no upcaster"):
        EventRegistry().register(GoalSet, GoalSetV2(), version=2)


def test_unknown_and_future_events_are_errors() -> None:
    with pytest.raises(UnknownEventType):
        REGISTRY.load("NoSuchEvent", 1, orjson.dumps({}))
    with pytest.raises(ValueError, match="newer"):
        REGISTRY.load("ReferralReceived", 99, orjson.dumps({}))


def test_an_event_that_breaks_its_own_schema_never_reaches_the_log() -> None:
    from shared.domain.events import CaseReleased
    from shared.events import InvalidEvent

    with pytest.raises(InvalidEvent, match="reason"):
        dumped(CaseReleased("case-1", "anna", "Not A Slug"))
    with pytest.raises(CorruptEvent):  # a 500 for the caller, never a 422 blaming its request (`log verify`)
        stored = orjson.dumps({"case_id": "case-1", "worker_id": "anna", "reason": "Not A Slug"})
        REGISTRY.load("CaseReleased", 1, stored, validate=True)


def test_reading_without_revalidation_builds_exactly_what_validation_builds() -> None:
    """Current-version events were validated when written, so reads skip marshmallow (the profile's hot spot)."""
    from datetime import date as day

    from shared.domain import events as ev

    samples = [
        ev.ProgrammeDefined(
            "P",
            ("cti", "icm"),
            12,
            (("phase_1", 4), ("phase_2", 4)),
            day(2016, 1, 1),
            day(2016, 3, 31),
            day(2016, 12, 31),
            10,
            2,
            ("housing",),
            1,
            10,
            ("exit",),
            {"cti": 20},
        ),
        ev.ProgrammeChanged(funding_end=day(2017, 6, 30)),
        ev.ReferralReceived("demo", "reden", True, "citizen-1", "sealed:v1:x", None, "18_24", "a" * 64),
        ev.StarRecorded({"housing": 3}),
        ev.Who5Recorded((1, 2, 3, 4, 5)),
        ev.WorkerJoined("anna", "cti", None),
        ev.CaseAssigned("case-1", "anna", "request"),
        ev.CitizenErased("citizen"),
    ]
    for event in samples:
        name, version, data = dumped(event)
        stored = orjson.dumps(data)
        assert data == orjson.loads(orjson.dumps(REGISTRY._by_name[name].schema.dump(event)))  # the schema's JSON
        assert REGISTRY.load(name, version, stored) == REGISTRY.load(name, version, stored, validate=True) == event
        # Read by msgspec, not the schema (speed): the same attributes, converted (dates, tuples), no others.
        assert list(vars(REGISTRY.load(name, version, stored)).items()) == list(vars(event).items())
    # Fields stored in another order (an earlier encoder wrote its schema's) are set in the class's order.
    assigned = ev.CaseAssigned("case-1", "anna", "request")
    stored = orjson.dumps({"via": "request", "case_id": "case-1", "worker_id": "anna"})
    reordered = REGISTRY.load("CaseAssigned", 1, stored)
    assert list(vars(reordered).items()) == list(vars(assigned).items())
    assert orjson.dumps(reordered) == orjson.dumps(assigned)
    # A stored payload without a field that has a default gets the default, as from the constructor.
    name, version, data = dumped(ev.ReferralReceived("demo", "reden", True, "citizen-1"))
    without = orjson.dumps({k: v for k, v in data.items() if k != "reopened_from"})
    assert vars(REGISTRY.load(name, version, without)) == vars(ev.ReferralReceived("demo", "reden", True, "citizen-1"))
    # A payload missing a field, or holding one of the wrong type, is corrupt, not an event with a hole in it.
    name, version, data = dumped(ev.CaseAssigned("case-1", "anna", "request"))
    for broken in ({k: v for k, v in data.items() if k != "worker_id"}, data | {"worker_id": 7}):
        with pytest.raises(CorruptEvent):
            REGISTRY.load(name, version, orjson.dumps(broken))
    # One holding a field its class does not have is read without it; ``log verify`` (validating) refuses it.
    extra = orjson.dumps(data | {"extra": 1})
    assert REGISTRY.load(name, version, extra) == ev.CaseAssigned("case-1", "anna", "request")
    with pytest.raises(CorruptEvent):
        REGISTRY.load(name, version, extra, validate=True)


def test_an_event_the_log_readers_would_refuse_never_reaches_the_log_and_log_verify_finds_one_that_did() -> None:
    """marshmallow's Integer takes 3.0 and "3", which msgspec, the log's reader, refuses: such an event would stop
    its partition's projection on every retry. So the append reads each event back as the workers will, and the
    validating read (``log verify``) reads a stored one as they do."""
    from shared.domain import events as ev
    from shared.events import InvalidEvent

    with pytest.raises(InvalidEvent, match="scores"):
        dumped(ev.StarRecorded({"housing": 3.0}))  # type: ignore[dict-item]
    version = REGISTRY.event_type("StarRecorded").version
    for stored in (b'{"scores": {"housing": 3.0}}', b'{"scores": {"housing": "3"}}'):
        assert REGISTRY._by_name["StarRecorded"].schema.validate(orjson.loads(stored)) == {}  # the schema takes it
        for validate in (False, True):
            with pytest.raises(CorruptEvent):
                REGISTRY.load("StarRecorded", version, stored, validate=validate)


# What a payload's fields may hold, valid for some schema or not: the catalogue's slugs, dates, bands and methods
# among them, so that both answers are tested on payloads each accepts as well as on those each refuses.
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 1_000_000)
    | st.floats(allow_nan=False)
    | st.sampled_from(["", "demo-cph", "Not A Slug", "18_24", "cti", "2016-01-15", "2016-02-30", "a" * 64, "x" * 4001])
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["housing", "X", ""]), inner, max_size=2)
    ),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(REGISTRY.names()), st.data())
def test_an_event_type_refuses_a_payload_as_its_whole_schema_does(name: str, data: st.DataObject) -> None:
    """The append checks a payload lean (``EventType.refusals``) rather than by the schema whole; the answer is the
    schema's own, field for field, for any payload of the class's fields."""
    event_type = REGISTRY.event_type(name)
    payload = {key: data.draw(_VALUES, label=key) for key in event_type.field_names}
    assert event_type.refusals(payload) == event_type.schema.validate(payload)


def test_every_event_type_is_checked_lean() -> None:
    """No event schema has hooks the lean pass does not run, so none is asked whole on an append."""
    assert [name for name in REGISTRY.names() if not REGISTRY.event_type(name).check.checks_lean] == []
