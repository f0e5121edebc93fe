"""The intake service: Flask app factory, and the ``caseflow-intake`` console script."""

from __future__ import annotations

import redis
from flask import Flask, Response, jsonify

from services.intake.admin import admin
from services.intake.admin import bp as admin_api
from services.intake.citizens import bp as citizens
from services.intake.courses import bp as courses
from services.intake.openapi import openapi
from services.intake.programmes import bp as programmes
from services.intake.referrals import bp as referrals
from services.intake.service import Intake
from services.intake.web import install_errors, log_role_refusals
from shared import http
from shared.authn import Authenticator, confirm_before_answering
from shared.bootstrap import connect, event_store
from shared.cli import jobs_commands, log_commands, projections, vault_commands
from shared.config import Settings
from shared.http import this_g
from shared.vault import Vault


def create_app(connection: redis.Redis | None = None, settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    connection = connection if connection is not None else connect(settings)
    app = http.service_app("intake", connection, settings, programmes, referrals, courses, citizens, admin_api)
    store = event_store(connection, settings)
    vault = Vault(connection, settings.key_prefix, settings.master_key)
    app.extensions["intake"] = Intake(store, settings.key_prefix, vault, settings.cpr_hmac_secret)
    app.extensions["authenticator"] = Authenticator(store)
    app.cli.add_command(admin)
    app.cli.add_command(projections)
    app.cli.add_command(log_commands)
    app.cli.add_command(vault_commands)
    app.cli.add_command(jobs_commands)
    install_errors(app)
    confirm_before_answering(app)
    log_role_refusals(app)

    @app.before_request
    def _remember_citizen_keys() -> None:
        this_g().vault_memory = memory = vault.remembering()
        memory.__enter__()

    @app.teardown_request
    def _forget_citizen_keys(_: BaseException | None) -> None:
        if (memory := this_g().pop("vault_memory", None)) is not None:
            memory.__exit__(None, None, None)

    @app.get("/openapi.json")
    def openapi_document() -> Response:
        return jsonify(openapi(app))

    return app


def wsgi() -> Flask:
    """For gunicorn: ``gunicorn 'services.intake.app:wsgi()'``."""
    return http.under_gunicorn(create_app, "intake")


def main() -> None:
    http.serve(create_app(), "INTAKE_PORT", 5001)
