"""The reporting service: Flask app factory, and the ``caseflow-reporting`` console script."""

from __future__ import annotations

import redis
from flask import Blueprint, Flask, Response, current_app, jsonify

from services.reporting.projection import ReportingProjection
from services.reporting.queries import referrals_per_partner
from shared import http
from shared.authn import Authenticator, caller
from shared.bootstrap import connect, projection_runner
from shared.cli import projections
from shared.config import Settings
from shared.domain.access import Role
from shared.http import ApiError
from shared.projections import ProjectionRunner

bp = Blueprint("reports", __name__)


def _runner() -> ProjectionRunner:
    runner: ProjectionRunner = current_app.extensions["reporting_runner"]
    return runner


@bp.get("/programmes/<programme_id>/referrals-per-partner")
def get_referrals_per_partner(programme_id: str) -> Response:
    """Coordinators see their programme, evaluators any; a referring partner sees only its own row."""
    principal = caller(Role.COORDINATOR, Role.EVALUATOR, Role.REFERRER)
    if principal.role is Role.COORDINATOR and principal.programme_id != programme_id:
        raise ApiError(404, "not_found", "no such programme")
    runner = _runner()
    only = principal.partner_id if principal.role is Role.REFERRER else None
    report = referrals_per_partner(runner.redis, current_app.config["KEY_PREFIX"], programme_id, only_partner=only)
    return jsonify(report | {"caught_up": runner.is_caught_up()})


def create_app(connection: redis.Redis | None = None, settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    connection = connection if connection is not None else connect(settings)
    app = http.service_app("reporting", connection, settings.key_prefix, bp)
    runner = projection_runner(connection, settings, ReportingProjection())
    app.extensions["reporting_runner"] = runner
    app.extensions["authenticator"] = Authenticator(runner.store)
    app.cli.add_command(projections)
    return app


def main() -> None:
    http.serve(create_app(), "REPORTING_PORT", 5002)
