"""Authenticating a request's API key against the partner's stream in the log.

A partner's fold is held per process and brought up to date on every request
(one round trip, see ``Folds``), so a revoked key stops working on the next
request, in every process. An endpoint whose only effect is one append may
instead take the key as this process last saw it (``caller(..., checked_by_append=True)``):
its append read-checks the partner's stream at that version, so nothing is
written for a key revoked since; and an answer given without such an append is
held back until the key is confirmed (``confirm_before_answering``).
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask, Response, current_app, session

from shared.aggregates import Folds, partner_fold
from shared.domain.access import Authority, Partner, Principal, Role, authenticate, parse_api_key, partner_stream
from shared.eventstore import AppendResult, EventStore
from shared.http import ApiError, bearer, error_response, this_app, this_g, this_request


class Authenticator:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._folds = Folds(store)

    def partner(self, partner_id: str) -> Partner | None:
        partner: Partner | None = self._folds.current(partner_fold(partner_id))[0]
        return partner

    def principal(self, authorization: str | None) -> Principal | None:
        """The caller behind an ``Authorization: Bearer <key>`` header, or None."""
        parsed = _parsed(authorization)
        return authenticate(self.partner(parsed[0]), parsed[1], parsed[2]) if parsed else None

    def held_principal(self, authorization: str | None) -> tuple[Principal | None, Authority | None]:
        """The caller as this process last saw its partner, with the version that says so; a key not valid
        there is looked up afresh (it may be new), and then needs no confirming (authority None)."""
        parsed = _parsed(authorization)
        if parsed is None:
            return None, None
        version, partner = self._folds.held(partner_fold(parsed[0]))
        if (principal := authenticate(partner, parsed[1], parsed[2])) is not None:
            return principal, Authority(partner_stream(parsed[0]), version)
        return self.principal(authorization), None


def _parsed(authorization: str | None) -> tuple[str, str, str] | None:
    credentials = bearer(authorization)
    return parse_api_key(credentials) if credentials else None


def caller(*roles: Role, checked_by_append: bool = False) -> Principal:
    """The authenticated caller of this request: 401 without a valid key, 403 for a role the endpoint never
    serves. ``checked_by_append``: see the module's docstring."""
    authenticator: Authenticator = this_app().extensions["authenticator"]
    header = this_request().headers.get("Authorization")
    if header is None and (kept := key_in_session()) is not None:
        header = f"Bearer {kept}"  # the reporting pages' login; read-only, so no CSRF to fear
    request_g = this_g()
    if checked_by_append:
        request_g.authorization = header  # what the key is confirmed by, if no append does it
        principal, request_g.authority = authenticator.held_principal(header)
    else:
        principal, request_g.authority = authenticator.principal(header), None
    if principal is None:
        raise ApiError(401, "unauthenticated", "send a valid API key: Authorization: Bearer <key>")
    request_g.principal = principal  # before the role is checked: a 403 is an answer to this key too
    if principal.role not in roles:
        raise ApiError(403, "forbidden", f"a {principal.role.value} key cannot be used here")
    return principal


def confirmed_by(result: AppendResult) -> None:
    """The request's key is confirmed if its append found the partner's stream at the version relied on."""
    request_g = this_g()
    authority: Authority | None = request_g.get("authority")
    if authority is not None and result.versions_at_append.get(authority.stream_id) == authority.version:
        request_g.authority = None


def confirm_before_answering(app: Flask) -> None:
    """An answer to a key taken as held, and not confirmed by an append (an error, an idempotent replay),
    waits for the key to be confirmed against the log now: 401 if it was revoked meanwhile."""

    @app.after_request
    def _confirm(response: Response) -> Response:
        request_g = this_g()
        if request_g.pop("authority", None) is None:
            return response
        authenticator: Authenticator = app.extensions["authenticator"]
        if authenticator.principal(request_g.get("authorization")) != request_g.get("principal"):
            return error_response(401, "unauthenticated", "send a valid API key: Authorization: Bearer <key>")
        return response


# The reporting pages' sign-in keeps the API key in Flask's session cookie, which is signed but readable: the key
# is sealed in it, so the cookie (in a browser profile, a proxy's log) does not give away a key that also works
# on intake's API. A cookie still signs its holder in to the pages, as any session cookie does.
_SESSION_KEY = "api_key"


def _session_cipher() -> AESGCM:
    secret = current_app.secret_key
    if not isinstance(secret, str | bytes) or not secret:  # not an assert: those go with `python -O`
        raise RuntimeError("the reporting pages need SECRET_KEY (CASEFLOW_SESSION_SECRET)")
    raw = secret.encode() if isinstance(secret, str) else secret
    return AESGCM(hashlib.sha256(b"caseflow session key|" + raw).digest())


def keep_in_session(key: str) -> None:
    nonce = os.urandom(12)
    sealed = nonce + _session_cipher().encrypt(nonce, key.encode(), _SESSION_KEY.encode())
    session.clear()
    session[_SESSION_KEY] = base64.urlsafe_b64encode(sealed).decode()


def key_in_session() -> str | None:
    """The API key the pages' sign-in kept, or None (no sign-in, or a cookie this secret did not seal)."""
    if not current_app.secret_key or not (kept := session.get(_SESSION_KEY)):
        return None
    try:
        sealed = base64.urlsafe_b64decode(kept)
        return _session_cipher().decrypt(sealed[:12], sealed[12:], _SESSION_KEY.encode()).decode()
    except (ValueError, InvalidTag):
        return None
