"""Random ids, as ``uuid.uuid4`` makes them but without building a ``UUID`` object for each: a referral makes
four (its case, its citizen, its event and its request), and the object's own checks took 2.2 of the 2.9 us an id
cost (docs/benchmarks-history.md, intake, twenty-third session)."""

from __future__ import annotations

import os


def random_hex() -> str:
    """A random (version 4) UUID's 32 hex digits, as ``uuid.uuid4().hex`` gives them."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    return raw.hex()


def random_uuid() -> str:
    """A random (version 4) UUID in its 36-character form, as ``str(uuid.uuid4())`` gives it."""
    digits = random_hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
