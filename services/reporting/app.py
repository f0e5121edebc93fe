"""The reporting service: Flask app factory, and the ``caseflow-reporting`` console script."""

from __future__ import annotations

import redis
from flask import Blueprint, Flask, Response, current_app, jsonify

from services.reporting.projection import ReportingProjection
from services.reporting.queries import referrals_per_partner
from shared import http
from shared.bootstrap import connect, projection_runner
from shared.config import Settings
from shared.projections import ProjectionRunner

bp = Blueprint("reports", __name__)


def _runner() -> ProjectionRunner:
    runner: ProjectionRunner = current_app.extensions["reporting_runner"]
    return runner


@bp.get("/programmes/<programme_id>/referrals-per-partner")
def get_referrals_per_partner(programme_id: str) -> Response:
    runner = _runner()
    report = referrals_per_partner(runner.redis, current_app.config["KEY_PREFIX"], programme_id)
    return jsonify(report | {"caught_up": runner.is_caught_up()})


def create_app(connection: redis.Redis | None = None, settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    connection = connection if connection is not None else connect(settings)
    app = http.service_app("reporting", connection, settings.key_prefix, bp)
    app.extensions["reporting_runner"] = projection_runner(connection, settings, ReportingProjection())
    return app


def main() -> None:
    http.serve(create_app(), "REPORTING_PORT", 5002)
