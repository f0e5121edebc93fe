"""Authenticating a request's API key against the partner's stream in the log.

A partner's fold is cached per process and checked against the stream's
length on every request (one round trip), so a revoked key stops working on
the next request, in every process.
"""

from __future__ import annotations

import threading

from flask import current_app, g, request, session

from shared.domain.access import (
    Partner,
    Principal,
    Role,
    authenticate,
    evolve_partner,
    parse_api_key,
    partner_stream,
)
from shared.eventstore import EventStore
from shared.http import ApiError


class Authenticator:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._cache: dict[str, Partner] = {}
        self._lock = threading.Lock()

    def partner(self, partner_id: str) -> Partner | None:
        stream = partner_stream(partner_id)
        version = self.store.stream_version(stream)
        with self._lock:
            cached = self._cache.get(partner_id)
        if cached is not None and cached.version == version:
            return cached
        partner: Partner | None = None
        for event in self.store.read_stream(stream):
            partner = evolve_partner(partner, partner_id, event.payload)
        if partner is not None:
            with self._lock:
                self._cache[partner_id] = partner
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
