"""What both Flask services share: one JSON error body for every 4xx/5xx, and request ids.

Every error answers ``{"error": {"code": ..., "message": ..., "fields": {...}}}``;
``fields`` appears for validation errors only. Messages never echo input values,
so no personal data reaches a response body or a log line through an error.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable
from datetime import date
from typing import Any, cast

import orjson
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from flask.ctx import _AppCtxGlobals
from flask.json.provider import DefaultJSONProvider
from flask.wrappers import Request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.local import LocalProxy

from shared.config import Settings
from shared.domain.calendar import EARLIEST_DATE, LATEST_PLANNING_DATE
from shared.ids import random_hex

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields


def error_response(status: int, code: str, message: str, fields: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields is not None:
        body["fields"] = fields
    response = jsonify(error=body)
    response.status_code = status
    return response


def date_arg(name: str) -> date | None:
    """A date from the query string, None when it is not given: 422 naming the parameter when it is not a date,
    or not one the suite takes (beyond them, reports ran to years Python has no dates for)."""
    value = request.args.get(name)
    if value is None:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ApiError(422, "validation_failed", "the request has invalid fields", {name: ["not a date"]}) from None
    if not EARLIEST_DATE <= day <= LATEST_PLANNING_DATE:
        span = f"between {EARLIEST_DATE.isoformat()} and {LATEST_PLANNING_DATE.isoformat()}"
        raise ApiError(422, "validation_failed", "the request has invalid fields", {name: [span]})
    return day


def bearer(authorization: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer <credentials>`` header (the scheme in any case), or None."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    return (credentials.strip() or None) if scheme.lower() == "bearer" else None


def sends_operator_token(token: str) -> bool:
    """Whether the request carries the operators' token (any request does when none is set): the figures of
    /metrics and /readyz say how much the suite does, for the operators, not for whoever reaches the port."""
    sent = bearer(request.headers.get("Authorization")) or ""
    return not token or hmac.compare_digest(sent.encode(), token.encode())


_REQUEST = cast("LocalProxy[Request]", request)
_G = cast("LocalProxy[_AppCtxGlobals]", g)
_APP = cast("LocalProxy[Flask]", current_app)


def this_request() -> Request:
    """The request being handled, itself rather than Flask's proxy for it. Each attribute read through the
    ``request``, ``g`` or ``current_app`` proxy is first looked for on the proxy, and on Python 3.11 that miss
    formats an AttributeError's message: 1.7 us a read, against 0.08 us on the object, and a referral read them
    32 times. So the code every request runs (the hooks, authentication, validation, the answer) takes the
    objects once (werkzeug's ``_get_current_object``, "useful for performance if you are accessing the object
    multiple times in a function"); elsewhere the proxies read better."""
    return _REQUEST._get_current_object()


def this_g() -> _AppCtxGlobals:
    """The request's ``g``, itself (see ``this_request``)."""
    return _G._get_current_object()


def this_app() -> Flask:
    """The app handling the request, itself (see ``this_request``)."""
    return _APP._get_current_object()


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 4xx that says what is wrong with it."""
    req = this_request()
    if not req.is_json:
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    data = req.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", "the body must be a JSON object")
    return data


class OrjsonProvider(DefaultJSONProvider):
    """Flask's JSON in and out through orjson: a referral's body and answer cost a third of the standard
    library's time (docs/benchmarks-history.md, intake). Keys keep their order and dates are ISO 8601; what orjson
    cannot encode goes to Flask's own ``default``, an integer beyond 64 bits to the standard library. Input
    that is not strict JSON (``NaN``) is malformed."""

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return self._encode(obj, indent=bool(kwargs.get("indent"))).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        body = self._encode(self._prepare_response_obj(args, kwargs), indent=False) + b"\n"
        return Response(body, mimetype=self.mimetype)

    def _encode(self, obj: Any, *, indent: bool) -> bytes:
        option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
        try:
            return orjson.dumps(obj, default=DefaultJSONProvider.default, option=option)
        except orjson.JSONEncodeError:  # what orjson refuses (an integer beyond 64 bits) the standard library may take
            return super().dumps(obj, indent=2 if indent else None).encode()


_REQUEST_ID = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def request_id(given: str) -> str:
    """A client's request id if it is a UUID (32 hex digits, as a W3C trace id, or with dashes), else one of
    ours. It goes into every log line and every event's metadata, for good: free text there could carry a
    name or a CPR number, which a UUID's shape cannot."""
    return given if _REQUEST_ID.fullmatch(given.lower()) else random_hex()


def install(app: Flask) -> None:
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json = OrjsonProvider(app)

    @app.before_request
    def _request_id() -> None:
        this_g().request_id = request_id(this_request().headers.get("X-Request-Id", ""))

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        req = this_request()
        response.headers["X-Request-Id"] = rid = this_g().get("request_id", "")
        # The route, not the path: a path is whatever the client typed, a name or a CPR number included.
        route = req.url_rule.rule if req.url_rule is not None else "(no route)"
        log.info("%s %s %s", req.method, route, response.status_code, extra={"request_id": rid or None})
        return response

    @app.errorhandler(ApiError)
    def _api_error(e: ApiError) -> Response:
        return error_response(e.status, e.code, e.message, e.fields)

    @app.errorhandler(ValidationError)
    def _validation_error(e: ValidationError) -> Response:
        fields = e.messages if isinstance(e.messages, dict) else {"_schema": e.messages}
        return error_response(422, "validation_failed", "the request has invalid fields", fields)

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> Response:
        code = (e.name or "error").lower().replace(" ", "_")
        return error_response(e.code or 500, code, e.description or e.name)

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> Response:
        log.exception("unhandled error (request %s)", g.get("request_id"))
        return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")


class ServiceApp(Flask):
    """Flask, asking once per view or hook whether it is an ``async def`` rather than on every call: a referral
    runs eight hooks and a view, and asking was 1 % of its instructions."""

    def __init__(self, import_name: str) -> None:
        super().__init__(import_name)
        self._made_sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if (sync := self._made_sync.get(func)) is None:
            sync = super().ensure_sync(func)
            if len(self._made_sync) < 1024:  # views and hooks are made once; anything made per call is not kept
                self._made_sync[func] = sync
        return sync


def service_app(name: str, connection: Any, settings: Settings, *blueprints: Blueprint) -> Flask:
    """A service's Flask app with the shared error handling, request ids and health endpoints."""
    from shared.durability import warn_if_not_durable
    from shared.metrics import install_metrics

    app = ServiceApp(name)
    app.config.update(KEY_PREFIX=settings.key_prefix)
    app.extensions["redis"] = connection
    install(app)
    install_health(app, connection, settings.metrics_token)
    install_metrics(app, name, connection, settings.metrics_token)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    warn_if_not_durable(connection, name)
    return app


def install_health(app: Flask, connection: Any, token: str = "") -> None:
    """``/healthz``: the process answers. ``/readyz``: Redis answers, with the log's durability; its figures only
    with the operators' ``token`` when one is set (a load balancer needs the status code alone)."""
    from shared.durability import check_durability

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> Response:
        """Ready: Redis answers, and no read model is damaged or further behind the log than the threshold (else
        503).
        Also reported: the log's durability, and queued and failed jobs per queue."""
        from shared.health import readiness

        try:
            durability = check_durability(connection)
            ready, report = readiness(connection)
        except Exception:  # Redis unreachable: not ready, and say so without a stack trace
            return error_response(503, "redis_unreachable", "the event log cannot be reached")
        status = "ready" if ready else "damaged" if "damaged" in report else "lagging"
        if sends_operator_token(token):
            response = jsonify(status=status, durable=durability.durable, durability=durability.detail, **report)
        else:
            response = jsonify(status=status)
        response.status_code = 200 if ready else 503
        return response


def under_gunicorn(create_app: Callable[[], Flask], service: str) -> Flask:
    """The app as a deployment runs it: JSON log lines (request ids, and exceptions by class name only, never
    their message, which may hold a name) set up before the app, as ``serve`` does for the local suite."""
    from shared.logs import configure_logging

    configure_logging(service)
    return create_app()


def serve(app: Flask, port_variable: str, default_port: int) -> None:
    """Run with Flask's own server: for the local suite. Deployments run gunicorn (see docker-compose.yml)."""
    import os

    from shared.logs import configure_logging

    configure_logging(app.name)
    # Werkzeug logs each request line as the client sent it (and a malformed one in its error): our own line,
    # with the route, stands in for it.
    logging.getLogger("werkzeug").disabled = True
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get(port_variable, default_port))
    log.info("serving on http://%s:%s (Flask's development server)", host, port)
    app.run(host=host, port=port)
