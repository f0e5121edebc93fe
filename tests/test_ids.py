"""Random ids are version 4 UUIDs, in the forms uuid4 gives them."""

from __future__ import annotations

import uuid

from shared.ids import random_hex, random_uuid


def test_a_random_id_is_a_version_4_uuid_in_the_form_uuid4_gives_it() -> None:
    for _ in range(1000):
        text, digits = random_uuid(), random_hex()
        as_text, as_digits = uuid.UUID(text), uuid.UUID(hex=digits)
        assert str(as_text) == text and as_digits.hex == digits
        assert as_text.version == as_digits.version == 4
        assert as_text.variant == as_digits.variant == uuid.RFC_4122


def test_random_ids_do_not_repeat() -> None:
    assert len({random_hex() for _ in range(10_000)}) == 10_000
    assert len({random_uuid() for _ in range(10_000)}) == 10_000
