"""Danish CPR numbers: format, birth date and century rules (no modulus-11 check, as since 2007)."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date

from shared.events.envelope import today

_CPR = re.compile(r"^([0-9]{2})([0-9]{2})([0-9]{2})-?([0-9]{4})$")  # ASCII digits: \d also takes other scripts


class InvalidCpr(ValueError):
    pass


@dataclass(frozen=True)
class Cpr:
    digits: str  # ten digits, no dash
    birth_date: date

    @property
    def sex(self) -> str:
        return "male" if int(self.digits[-1]) % 2 else "female"


def century(seventh_digit: int, yy: int) -> int:
    """The century a CPR number's two-digit year belongs to."""
    if seventh_digit <= 3:
        return 1900
    if seventh_digit in (4, 9):
        return 2000 if yy <= 36 else 1900
    return 2000 if yy <= 57 else 1800  # 5-8


def parse_cpr(text: str) -> Cpr:
    match = _CPR.match(text.strip())
    if not match:
        raise InvalidCpr("a CPR number is DDMMYY-SSSS: ten digits, the dash optional")
    dd, mm, yy, serial = match.groups()
    year = century(int(serial[0]), int(yy)) + int(yy)
    try:
        born = date(year, int(mm), int(dd))
    except ValueError:
        raise InvalidCpr("the first six digits are not a valid date of birth") from None
    if born > today():
        raise InvalidCpr("the date of birth it gives is in the future")
    return Cpr(digits=dd + mm + yy + serial, birth_date=born)


def cpr_fingerprint(cpr: Cpr, secret: bytes) -> str:
    """A keyed hash (HMAC-SHA256) that matches a citizen without storing the CPR number itself."""
    return hmac.new(secret, cpr.digits.encode(), hashlib.sha256).hexdigest()


def age_band(birth_date: date, on: date) -> str:
    """The bands the reports use: under 18, 18-24, 25 and over."""
    age = on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))
    return "under_18" if age < 18 else "18_24" if age <= 24 else "25_plus"


def match_key(alias: str, birth_date: date, secret: bytes) -> str:
    """A keyed hash of a normalised alias and a birth date: citizens without a CPR number can be proposed as
    one person when these agree, without either value stored in clear."""
    normalised = " ".join(alias.casefold().split())
    return hmac.new(secret, f"{normalised}|{birth_date.isoformat()}".encode(), hashlib.sha256).hexdigest()
