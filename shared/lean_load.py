"""A marshmallow schema's load, its success path run lean: the same fields and validators, without the schema's
bookkeeping around them.

``Schema.load`` spends most of its time on its own pass (an error store, hook lookups, a closure and a validator
chain built per field, the check for unknown keys as a set difference), not on the fields: a referral's body, with
its two nested schemas, took 19 us to load and takes 4 us here; a referral's event is checked in 3 us, not 12
(docs/benchmarks.md, measure 1). The lean pass has each field of the schema deserialize its value and run its
validators, recurses into nested schemas, and calls the schema's own ``@validates`` and ``@validates_schema``
methods as marshmallow calls them. It is trusted only when all of that succeeds: anything it refuses, or anything it
does not know (an unknown key, a value not a dict), goes to the schema's own ``load``, whose answer (its result, or
its ``ValidationError`` with every message) is the one returned. So an error reads exactly as marshmallow words it,
and the lean pass can only be wrong by accepting what the schema refuses or loading it differently, which
``tests/test_lean_load.py`` looks for on every schema.

A schema with hooks the lean pass does not run (``pre_load``; ``post_load`` for a load; a collection or
``pass_original`` validator), or loading ``many``, ``partial`` or with another ``unknown`` than RAISE, is always
loaded whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, missing
from marshmallow.decorators import POST_LOAD, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA


class _NotLean(Exception):
    """What the lean pass does not judge: the schema's own load does."""


_FIELD_STEPS = ("deserialize", "_validate_missing", "_validate", "_validate_all")


class _Field:
    """A field's ``deserialize``, its steps taken directly: building and running its validator chain was a third
    of asking a field. For a field whose class keeps ``Field``'s own steps and that has no ``pre_load`` or
    ``post_load`` functions of its own; any other is asked whole."""

    def __init__(self, field: fields.Field[Any]) -> None:
        self.field = field
        self.own_steps = not field.pre_load and not field.post_load
        self.own_steps &= all(getattr(type(field), step) is getattr(fields.Field, step) for step in _FIELD_STEPS)
        self.validators = tuple(field.validators)

    def deserialize(self, raw: Any, key: str, data: dict[str, Any]) -> Any:
        field = self.field
        if not self.own_steps:
            return field.deserialize(raw, key, data)
        if raw is missing:
            if field.required:
                raise _NotLean
            default = field.load_default
            return default() if callable(default) else default
        if raw is None:
            if field.allow_none:
                return None
            raise _NotLean
        value = field._deserialize(raw, key, data)
        for validate in self.validators:
            validate(value)
        return value


class _Plan:
    """One schema's fields and validators, looked up once."""

    def __init__(self, schema: Schema) -> None:
        self.fields: list[tuple[str, str, _Field, _Plan | None]] = []
        for name, field in schema.load_fields.items():
            key = field.data_key if field.data_key is not None else name
            self.fields.append((key, field.attribute or name, _Field(field), _nested_plan(field)))
        self.keys = frozenset(key for key, *_ in self.fields)
        self.field_validators: list[tuple[Callable[..., Any], str, str]] = []
        for method, _, options in schema._hooks[VALIDATES]:
            for name in options["field_names"]:
                if name not in schema.fields:  # as marshmallow: passed over if the schema excludes it, else a bug
                    if name in schema.declared_fields:
                        continue
                    raise ValueError(f'"{name}" field does not exist.')
                field = schema.fields[name]
                key = field.data_key if field.data_key is not None else name
                self.field_validators.append((getattr(schema, method), field.attribute or name, key))
        self.schema_validators = [getattr(schema, method) for method, _, _ in schema._hooks[VALIDATES_SCHEMA]]

    def load(self, data: Any) -> dict[str, Any]:
        if type(data) is not dict or not self.keys.issuperset(data):
            raise _NotLean
        loaded: dict[str, Any] = {}
        for key, attribute, field, nested in self.fields:
            raw = data.get(key, missing)
            value = nested.load(raw) if nested is not None and type(raw) is dict else field.deserialize(raw, key, data)
            if value is not missing:
                loaded[attribute] = value
        for validate, attribute, key in self.field_validators:
            if attribute in loaded and validate(loaded[attribute], data_key=key) is missing:
                del loaded[attribute]
        for validate_schema in self.schema_validators:
            validate_schema(loaded, partial=None, many=False, unknown=RAISE)
        return loaded


def _runs_lean(schema: Schema, loading: bool) -> bool:
    """Whether the lean pass does all that the schema's load (or, not ``loading``, its validate) does."""
    hooks = schema._hooks
    if hooks[PRE_LOAD] or (loading and hooks[POST_LOAD]):
        return False
    if any(many or options.get("pass_original") for _, many, options in hooks[VALIDATES_SCHEMA]):
        return False
    return not schema.many and schema.partial is None and schema.unknown == RAISE and schema.dict_class is dict


def _nested_plan(field: fields.Field[Any]) -> _Plan | None:
    """A nested schema's own plan, when the field adds nothing of its own to loading it."""
    if type(field) is not fields.Nested or field.many or field.validators or field.unknown is not None:
        return None
    if field.pre_load or field.post_load:  # the field's own functions, which only its deserialize runs
        return None
    return _Plan(field.schema) if _runs_lean(field.schema, loading=True) else None


class LeanLoad:
    """``schema.load`` and ``schema.validate``, with the same answers (see the module's docstring)."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self._load = _Plan(schema) if _runs_lean(schema, loading=True) else None
        self._check = self._load or (_Plan(schema) if _runs_lean(schema, loading=False) else None)

    @property
    def loads_lean(self) -> bool:
        return self._load is not None

    @property
    def checks_lean(self) -> bool:
        return self._check is not None

    def load(self, data: Any) -> Any:
        if self._load is not None:
            try:
                return self._load.load(data)
            except (_NotLean, ValidationError):
                pass
        return self.schema.load(data)

    def refusals(self, data: Any) -> dict[str, Any]:
        """What ``schema.validate`` says of ``data``: nothing, or every message."""
        if self._check is not None:
            try:
                self._check.load(data)
                return {}
            except (_NotLean, ValidationError):
                pass
        refused: dict[str, Any] = self.schema.validate(data)
        return refused
