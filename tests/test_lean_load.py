"""``shared.lean_load``: a request body loads lean with the same answer as its schema's own load, for every
schema intake validates with; and the lean pass really runs (a schema that would refuse being loaded whole)."""

from __future__ import annotations

import inspect
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError, fields, validate

from services.intake import schemas
from services.intake.schemas import ReferralRequest
from shared.lean_load import LeanLoad

REQUEST_SCHEMAS = sorted(
    (cls for _, cls in inspect.getmembers(schemas, inspect.isclass) if issubclass(cls, Schema) and cls is not Schema),
    key=lambda cls: cls.__name__,
)
_ANYTHING = st.none() | st.booleans() | st.integers(-2, 200) | st.floats(allow_nan=False) | st.text(max_size=4)
_PLAUSIBLE = ["demo-cph", "cti", "housing", "anna", "Maja", "0101901234"]
_IMPLAUSIBLE = ["", "Not A Slug", "x" * 501, "3201901234", "2016-02-30"]


def _values(field: fields.Field[Any], wild: bool) -> st.SearchStrategy[Any]:
    """What a client might send for a field: values it may well accept (its choices, dates, slugs) and, ``wild``,
    values of any kind, most of which it refuses."""
    plausible: st.SearchStrategy[Any]
    if isinstance(field, fields.Nested):
        body = _bodies(field.schema, wild)
        plausible = st.lists(body, min_size=1, max_size=3) if field.many else body
    elif isinstance(field, fields.List):
        plausible = st.lists(_values(field.inner, wild), min_size=1, max_size=6)
    elif isinstance(field, fields.Dict):
        keys = _values(field.key_field, wild) if field.key_field else st.text(max_size=4)
        values = _values(field.value_field, wild) if field.value_field else _ANYTHING
        plausible = st.dictionaries(keys.filter(lambda k: isinstance(k, str)), values, max_size=3)
    elif isinstance(field, fields.Boolean):
        plausible = st.booleans()
    elif isinstance(field, fields.Integer):
        plausible = st.integers(1, 12)
    elif isinstance(field, fields.Date):
        plausible = st.dates(date(2005, 1, 1), date(2026, 1, 1)).map(date.isoformat)
    else:
        plausible = st.sampled_from(
            [c for v in field.validators if isinstance(v, validate.OneOf) for c in v.choices] or _PLAUSIBLE
        )
    if not wild:
        return plausible
    strange = st.sampled_from([*_IMPLAUSIBLE, -1, 3.0, "3", "1890-01-01", "2035-01-01"]) | _ANYTHING
    return plausible | strange


def _bodies(schema: Schema, wild: bool) -> st.SearchStrategy[dict[str, Any]]:
    """A body with the schema's required keys and any of the others; ``wild``, any of its keys, now and then with
    one it does not know."""
    keys = {(f.data_key or name): f for name, f in schema.load_fields.items()}
    required = {key: _values(f, wild) for key, f in keys.items() if f.required and not wild}
    optional = {key: _values(f, wild) for key, f in keys.items() if key not in required}
    return st.fixed_dictionaries(required, optional=optional | ({"unknown": _ANYTHING} if wild else {}))


def _answer(load: Any, body: Any) -> tuple[str, Any]:
    try:
        return "loaded", load(body)
    except ValidationError as e:
        return "refused", e.messages


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(REQUEST_SCHEMAS), st.data())
def test_a_request_loads_lean_as_its_schema_loads_it(schema_class: type[Schema], data: st.DataObject) -> None:
    """The lean pass is trusted only when it succeeds, so what could differ is a body it accepts: the schema must
    accept it too, into the same data."""
    schema = schema_class()
    body = data.draw(st.booleans().flatmap(lambda wild: _bodies(schema, wild)), label="body")
    assert _answer(LeanLoad(schema).load, body) == _answer(schema.load, body)


@pytest.mark.parametrize("schema_class", REQUEST_SCHEMAS, ids=lambda cls: cls.__name__)
def test_every_request_schema_loads_lean(schema_class: type[Schema]) -> None:
    assert LeanLoad(schema_class()).loads_lean


class _LoadedWholeRefuses(ReferralRequest):
    """The referral's schema, refusing any load that reaches it whole: what loads is what the lean pass loaded."""

    def load(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("loaded whole")


def test_a_valid_referral_is_loaded_lean_with_its_defaults_and_validators() -> None:
    lean = LeanLoad(_LoadedWholeRefuses())
    loaded = lean.load({"programme_id": "demo-cph", "consent": {"given": True}, "citizen": {"alias": "Maja"}})
    assert loaded["citizen"] == {"alias": "Maja", "cpr": None, "birth_date": None}
    assert loaded["self_referral"] is False and isinstance(loaded["referred_on"], date)
    with pytest.raises(AssertionError, match="loaded whole"):  # refused lean: the schema's own load answers
        lean.load({"programme_id": "demo-cph", "consent": {"given": True}, "citizen": {"birth_date": "1890-01-01"}})


@pytest.mark.parametrize(
    "body",
    [
        {"programme_id": "demo-cph", "consent": {"given": True}, "extra": 1},  # an unknown key
        {"programme_id": "demo-cph", "consent": {"given": True, "extra": 1}},  # one in a nested body
        {"programme_id": "demo-cph", "consent": {"given": "yes"}},  # a nested field's refusal
        {"programme_id": "demo-cph", "consent": {"given": True}, "citizen": {"cpr": "3201901234"}},  # @validates
        {
            "programme_id": "demo-cph",
            "consent": {"given": True},
            "citizen": {"birth_date": "2016-01-16"},
            "referred_on": "2016-01-15",
        },  # @validates_schema
        {"consent": {"given": True}},  # a required field missing
        ["not", "an", "object"],
    ],
)
def test_what_the_lean_pass_refuses_is_answered_by_the_schema_itself(body: Any) -> None:
    schema = ReferralRequest()
    answer = _answer(LeanLoad(schema).load, body)
    assert answer[0] == "refused" and answer == _answer(schema.load, body)


class _FieldsWithStepsOfTheirOwn(Schema):
    """A field class with a step of its own (Constant's check for a missing value), a field with load functions of
    its own, and a nested schema's field with one: each is asked whole by the lean pass."""

    kind = fields.Constant("referral")
    alias = fields.String(pre_load=[str.strip], post_load=[str.upper], validate=validate.Length(1, 10))
    consent = fields.Nested(schemas.ConsentSchema, post_load=[lambda consent: {"given": not consent["given"]}])


@pytest.mark.parametrize(
    "body",
    [{}, {"kind": None, "alias": "  maja "}, {"alias": "   "}, {"alias": " x" * 9}, {"consent": {"given": True}}],
)
def test_fields_with_steps_of_their_own_load_lean_as_whole(body: dict[str, Any]) -> None:
    schema = _FieldsWithStepsOfTheirOwn()
    assert LeanLoad(schema).loads_lean
    assert _answer(LeanLoad(schema).load, body) == _answer(schema.load, body)
