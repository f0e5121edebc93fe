"""Who may see and do what: roles, their scopes, and API keys. Pure rules, no Redis.

Order of checks at every endpoint: no or wrong key -> 401; a role that may
never call the endpoint -> 403; a case or programme outside the caller's scope
-> 404, exactly as for one that does not exist, so nothing leaks its existence.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field, replace
from enum import StrEnum

from shared.domain.case import Case
from shared.domain.caseload import Caseload
from shared.domain.events import ApiKeyIssued, ApiKeyRevoked, PartnerRegistered
from shared.events import DomainEvent


class Role(StrEnum):
    REFERRER = "referrer"  # an NGO or other partner: its own referrals and their outcome, never course content
    WORKER = "worker"  # a relation worker: the courses assigned to them
    COORDINATOR = "coordinator"  # programme staff: every course of their programme
    EVALUATOR = "evaluator"  # pseudonymised statistics and exports only
    ADMIN = "admin"  # partners and keys; no case content


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    partner_id: str
    key_id: str
    role: Role
    programme_id: str | None = None  # the scope of workers and coordinators
    worker_id: str | None = None  # for workers: which relation worker they are


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    secret_hash: str
    role: Role
    programme_id: str | None
    worker_id: str | None
    label: str
    revoked: bool = False


@dataclass(frozen=True)
class Partner:
    partner_id: str
    name: str
    kind: str
    keys: dict[str, IssuedKey] = field(default_factory=dict)
    version: int = 0


def partner_stream(partner_id: str) -> str:
    return f"partner-{partner_id}"


@dataclass(frozen=True)
class Authority:
    """A caller's key as checked against its partner's stream at ``version``, not yet confirmed against the
    log: a command's append read-checks that version, so the key is still valid at the instant it writes."""

    stream_id: str
    version: int


def evolve_partner(partner: Partner | None, partner_id: str, event: DomainEvent) -> Partner:
    if partner is None:
        if not isinstance(event, PartnerRegistered):
            raise ValueError(f"partner {partner_id} must start with PartnerRegistered")
        return Partner(partner_id, event.name, event.kind, version=1)
    partner = replace(partner, version=partner.version + 1)
    match event:
        case ApiKeyIssued():
            key = IssuedKey(
                event.key_id, event.secret_hash, Role(event.role), event.programme_id, event.worker_id, event.label
            )
            return replace(partner, keys={**partner.keys, event.key_id: key})
        case ApiKeyRevoked(key_id=key_id):
            return replace(partner, keys={**partner.keys, key_id: replace(partner.keys[key_id], revoked=True)})
    raise ValueError(f"partner {partner_id}: no rule for {type(event).__name__}")


# -- keys: "cfk.<partner>.<key id>.<secret>"; only a hash of the secret is ever stored ------------------------

_KEY = re.compile(r"^cfk\.([a-z0-9][a-z0-9-]{0,63})\.([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$")


def new_api_key(partner_id: str) -> tuple[str, str, str]:
    """A fresh key: (the key to show once, its key id, the hash to store)."""
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    return f"cfk.{partner_id}.{key_id}.{secret}", key_id, hash_secret(secret)


def hash_secret(secret: str) -> str:
    """The secret has 256 random bits, so a plain SHA-256 is enough: no password to stretch."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_api_key(key: str) -> tuple[str, str, str] | None:
    """(partner id, key id, secret), or None when it is not shaped like a key."""
    match = _KEY.match(key)
    return (match.group(1), match.group(2), match.group(3)) if match else None


def authenticate(partner: Partner | None, key_id: str, secret: str) -> Principal | None:
    issued = partner.keys.get(key_id) if partner else None
    if partner is None or issued is None or issued.revoked:
        return None
    if not hmac.compare_digest(issued.secret_hash, hash_secret(secret)):
        return None
    return Principal(partner.partner_id, key_id, issued.role, issued.programme_id, issued.worker_id)


# -- scope -------------------------------------------------------------------------------------------------


def sees_programme(principal: Principal, programme_id: str) -> bool:
    return principal.role in (Role.COORDINATOR, Role.WORKER) and principal.programme_id == programme_id


def within_key_scope(principal: Principal, programme_id: str) -> bool:
    """A key issued for a programme reaches that programme only; a referrer's or evaluator's key issued for none
    reaches every programme (staff keys always name theirs)."""
    return principal.programme_id in (None, programme_id)


def sees_course(principal: Principal, case: Case, caseload: Caseload | None) -> bool:
    """Full course content: the programme's coordinators, and the worker the course is assigned to."""
    if principal.role is Role.COORDINATOR:
        return case.programme_id == principal.programme_id
    if principal.role is Role.WORKER:
        assigned = caseload.assignments.get(case.case_id) if caseload else None
        return case.programme_id == principal.programme_id and assigned == principal.worker_id
    return False


def sees_referral(principal: Principal, case: Case, caseload: Caseload | None) -> bool:
    """The referral and its outcome: whoever sees the course, and the partner that made the referral. A reopened
    course was not referred by a partner (its source is the coordinator's organisation, which may also refer)."""
    if principal.role is Role.REFERRER:
        return (
            case.source == principal.partner_id
            and case.reopened_from is None
            and within_key_scope(principal, case.programme_id)
        )
    return sees_course(principal, case, caseload)


def referral_outcome(case: Case) -> dict[str, object]:
    """What a referring partner may know: whether its referral was accepted, declined or withdrawn."""
    outcome = {
        "referred": "pending",
        "in_assessment": "accepted",
        "enrolled": "accepted",
        "closed": "accepted",
        "declined": "declined",
        "withdrawn": "withdrawn",
        "referred_on": "referred_on",
    }[case.status.value]
    return {
        "case_id": case.case_id,
        "programme_id": case.programme_id,
        "referred_on": case.referred_on.isoformat(),
        "outcome": outcome,
        "reason": case.outcome_reason if outcome in ("declined", "referred_on") else None,
    }
