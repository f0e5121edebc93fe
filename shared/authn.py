"""Authenticating a request's API key against the partner's stream in the log.

A partner's fold is held per process and brought up to date on every request
(one round trip, see ``Folds``), so a revoked key stops working on the next
request, in every process.
"""

from __future__ import annotations

from flask import current_app, g, request, session

from shared.aggregates import Folds, partner_fold
from shared.domain.access import Partner, Principal, Role, authenticate, parse_api_key
from shared.eventstore import EventStore
from shared.http import ApiError


class Authenticator:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._folds = Folds(store)

    def partner(self, partner_id: str) -> Partner | None:
        partner: Partner | None = self._folds.current(partner_fold(partner_id))[0]
        return partner

    def principal(self, authorization: str | None) -> Principal | None:
        """The caller behind an ``Authorization: Bearer <key>`` header, or None."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        parsed = parse_api_key(authorization.removeprefix("Bearer ").strip())
        if parsed is None:
            return None
        partner_id, key_id, secret = parsed
        return authenticate(self.partner(partner_id), key_id, secret)


def caller(*roles: Role) -> Principal:
    """The authenticated caller of this request: 401 without a valid key, 403 for a role the endpoint never serves."""
    authenticator: Authenticator = current_app.extensions["authenticator"]
    header = request.headers.get("Authorization")
    if header is None and current_app.secret_key and session.get("api_key"):
        header = f"Bearer {session['api_key']}"  # the reporting pages' login; read-only, so no CSRF to fear
    principal = authenticator.principal(header)
    if principal is None:
        raise ApiError(401, "unauthenticated", "send a valid API key: Authorization: Bearer <key>")
    if principal.role not in roles:
        raise ApiError(403, "forbidden", f"a {principal.role.value} key cannot be used here")
    g.principal = principal
    return principal
