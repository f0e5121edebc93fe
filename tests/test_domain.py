"""The domain rules, with no Redis and no Flask."""

from __future__ import annotations

from datetime import date

import pytest

from shared.domain.case import (
    CaseStatus,
    Refused,
    decide_decline,
    decide_start_assessment,
    decide_withdraw,
    evolve,
)
from shared.domain.cpr import InvalidCpr, century, cpr_fingerprint, parse_cpr
from shared.domain.events import AssessmentStarted, ReferralDeclined, ReferralReceived


@pytest.mark.parametrize(
    ("cpr", "born"),
    [
        ("010190-1234", date(1990, 1, 1)),  # 7th digit 0-3: 1900s
        ("0101901234", date(1990, 1, 1)),  # dash optional
        ("010110-4123", date(2010, 1, 1)),  # 4 and yy <= 36: 2000s
        ("010150-4123", date(1950, 1, 1)),  # 4 and yy > 36: 1900s
        ("010120-9123", date(2020, 1, 1)),  # 9 and yy <= 36: 2000s
        ("010107-5123", date(2007, 1, 1)),  # 5-8 and yy <= 57: 2000s (57 itself: 2057, not born yet)
        ("010158-8123", date(1858, 1, 1)),  # 5-8 and yy > 57: 1800s
        ("290200-4001", date(2000, 2, 29)),  # leap day of a leap century year
    ],
)
def test_cpr_century_rules(cpr: str, born: date) -> None:
    assert parse_cpr(cpr).birth_date == born
    assert (century(5, 57), century(5, 58), century(4, 36), century(4, 37)) == (2000, 1800, 2000, 1900)


@pytest.mark.parametrize(
    "bad",
    [
        "290201-1234",
        "320190-1234",
        "011390-1234",
        "01019-1234",
        "abcdefghij",
        "",
        "010157-5123",  # born 2057: not yet
        "\u0661\u0662\u0660\u0661\u0669\u0660-\u0661\u0662\u0663\u0664",  # Arabic-Indic digits: not a CPR number
    ],
)
def test_invalid_cpr_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(InvalidCpr) as refused:
        parse_cpr(bad)
    assert bad == "" or bad not in str(refused.value)


def test_cpr_without_modulus_11_is_accepted() -> None:
    # 010190-1235 fails the old modulus-11 check; since 2007 such numbers exist.
    assert parse_cpr("010190-1235").sex == "male"
    assert parse_cpr("010190-1234").sex == "female"


def test_cpr_fingerprint_is_keyed_and_stable() -> None:
    cpr = parse_cpr("010190-1234")
    assert cpr_fingerprint(cpr, b"k1") == cpr_fingerprint(parse_cpr("0101901234"), b"k1")
    assert cpr_fingerprint(cpr, b"k1") != cpr_fingerprint(cpr, b"k2")
    assert "0101901234" not in cpr_fingerprint(cpr, b"k1")


REFERRAL = ReferralReceived(programme_id="demo", source="reden", consent_given=True)


def test_a_case_starts_referred_and_remembers_its_history() -> None:
    case = evolve(None, "case-1", REFERRAL, date(2016, 1, 10))
    case = evolve(case, "case-1", AssessmentStarted(), date(2016, 1, 20))
    assert case.status is CaseStatus.IN_ASSESSMENT
    assert case.version == 2
    assert case.status_on(date(2016, 1, 9)) is None
    assert case.status_on(date(2016, 1, 10)) is CaseStatus.REFERRED
    assert case.status_on(date(2016, 1, 19)) is CaseStatus.REFERRED
    assert case.status_on(date(2016, 2, 1)) is CaseStatus.IN_ASSESSMENT


def test_a_case_must_start_with_a_referral() -> None:
    with pytest.raises(ValueError, match="must start with ReferralReceived"):
        evolve(None, "case-1", AssessmentStarted(), date(2016, 1, 10))


def test_lifecycle_refusals_carry_a_code() -> None:
    case = evolve(None, "case-1", REFERRAL, date(2016, 1, 10))
    with pytest.raises(Refused) as before:
        decide_start_assessment(case, date(2016, 1, 9))
    assert before.value.code == "date_before_referral"

    declined = evolve(case, "case-1", decide_decline(case, "not in target group", date(2016, 1, 11)), date(2016, 1, 11))
    assert declined.status is CaseStatus.DECLINED
    assert declined.outcome_reason == "not in target group"
    for decide in (
        lambda c: decide_start_assessment(c, date(2016, 1, 12)),
        lambda c: decide_withdraw(c, "moved", date(2016, 1, 12)),
        lambda c: decide_decline(c, "again", date(2016, 1, 12)),
    ):
        with pytest.raises(Refused) as closed:
            decide(declined)
        assert closed.value.code == "case_closed"


def test_assessment_cannot_start_twice() -> None:
    case = evolve(None, "case-1", REFERRAL, date(2016, 1, 10))
    case = evolve(case, "case-1", AssessmentStarted(), date(2016, 1, 11))
    with pytest.raises(Refused) as twice:
        decide_start_assessment(case, date(2016, 1, 12))
    assert twice.value.code == "already_in_assessment"


def test_an_unknown_event_on_a_case_is_an_error_not_ignored() -> None:
    case = evolve(None, "case-1", REFERRAL, date(2016, 1, 10))
    with pytest.raises(ValueError, match="no rule"):
        evolve(case, "case-1", REFERRAL, date(2016, 1, 11))
    assert isinstance(decide_decline(case, "x", date(2016, 1, 10)), ReferralDeclined)
