"""The reporting service: statistics from the read models. Flask app factory and the console script."""

from __future__ import annotations

import re
from datetime import date

import redis
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue

from services.reporting.export import courses_csv, measurements_csv, pseudonymised_fidelity
from services.reporting.openapi import openapi
from services.reporting.projection import ReportingProjection
from services.reporting.queries import FIDELITY_CRITERIA, Reports, month_range, outcomes_only, period_months
from shared import http
from shared.authn import Authenticator, caller, keep_in_session, key_in_session
from shared.bootstrap import connect, event_store
from shared.cli import jobs_commands, log_commands, projections, vault_commands
from shared.config import Settings
from shared.domain.access import Principal, Role, within_key_scope
from shared.domain.calendar import EARLIEST_DATE, LATEST_PLANNING_DATE
from shared.events.envelope import today
from shared.eventstore import EventStore
from shared.http import ApiError, error_response
from shared.projections import caught_up

bp = Blueprint("reports", __name__, template_folder="templates")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
# A page of this site to go to after signing in: a path of printable ASCII. Browsers drop tabs and newlines from
# a URL and read a backslash as a slash, so "/\t/evil.example" or "/\\evil.example" would leave the site.
_LOCAL_PATH = re.compile(r"/(?![/\\])[!-\[\]-~]*")


def _store() -> EventStore:
    store: EventStore = current_app.extensions["event_store"]
    return store


def _reports() -> Reports:
    if "reports" not in g:  # one per request: it resolves the generation readers use now (rebuilds switch it)
        g.reports = Reports(_store().redis, current_app.config["KEY_PREFIX"], _store())
    reports: Reports = g.reports
    return reports


def _caught_up() -> bool:
    """Whether the generation this request reads has applied every event in the log, and settled the citizens
    with several referrals (until then the citizens' counts may count one twice)."""
    ns = _reports().ns
    return caught_up(_store(), ns) and not ReportingProjection().unsettled(_store().redis, ns)


def _statistics_caller(programme_id: str, *extra: Role) -> Principal:
    """Coordinators see their programme, evaluators any their key reaches (both pseudonymised); 404 outside."""
    principal = caller(Role.COORDINATOR, Role.EVALUATOR, *extra)
    if not within_key_scope(principal, programme_id):  # a coordinator's key always names its programme
        raise ApiError(404, "not_found", "no such programme")
    if not _reports().has_programme(programme_id):  # every report alike: not 200 and zeros from some
        raise LookupError(programme_id)
    return principal


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_failed", "the request has invalid fields", {field: [message]})


def _date_arg(name: str) -> date:
    return http.date_arg(name) or today()


def _slice() -> tuple[str | None, str | None]:
    """?partner= or ?method=: the statistic for one partner's referrals, or for one method's courses."""
    partner, method = request.args.get("partner"), request.args.get("method")
    if partner and method:
        raise _invalid("method", "filter by partner or by method, not both")
    return partner, method


def _month_arg(name: str) -> str | None:
    value = request.args.get(name)
    if value is not None and not _MONTH.match(value):
        raise _invalid(name, "a month: YYYY-MM")
    if value is not None and not EARLIEST_DATE.isoformat()[:7] <= value <= LATEST_PLANNING_DATE.isoformat()[:7]:
        raise _invalid(name, f"between {EARLIEST_DATE.isoformat()[:7]} and {LATEST_PLANNING_DATE.isoformat()[:7]}")
    return value


def _period() -> tuple[str | None, str | None]:
    """?from=YYYY-MM&to=YYYY-MM, either left out; a period that ends before it starts is refused, not empty."""
    start, end = _month_arg("from"), _month_arg("to")
    if start is not None and end is not None and end < start:
        raise _invalid("to", "not before from")
    return start, end


@bp.get("/programmes/<programme_id>/statistics/status")
def status(programme_id: str) -> Response:
    """Status on a date (default today): ?on=YYYY-MM-DD, and one of ?partner= or ?method=."""
    _statistics_caller(programme_id)
    report = _reports().status_on(programme_id, _date_arg("on"), *_slice())
    return jsonify(report | {"caught_up": _caught_up()})


@bp.get("/programmes/<programme_id>/statistics/intake")
def intake(programme_id: str) -> Response:
    """Referrals per month and the average, ?from=YYYY-MM&to=YYYY-MM&partner=."""
    _statistics_caller(programme_id)
    report = _reports().intake(programme_id, *_period(), request.args.get("partner"))
    return jsonify(report | {"caught_up": _caught_up()})


@bp.get("/programmes/<programme_id>/statistics/caseloads")
def caseloads(programme_id: str) -> Response:
    """Caseload per worker on a day (?on=), month by month (?from=&to=, default: from recruitment start)."""
    _statistics_caller(programme_id)
    reports, day, (start, end) = _reports(), _date_arg("on"), _period()
    recruited_from = reports.programme(programme_id).recruitment_start.isoformat()[:7]
    months = period_months(start, end, recruited_from, day.isoformat()[:7])
    return jsonify(reports.caseloads(programme_id, day, months) | {"caught_up": _caught_up()})


@bp.get("/programmes/<programme_id>/statistics/courses")
def courses(programme_id: str) -> Response:
    """Courses against targets on a day (default today): ?on=YYYY-MM-DD. Per method already, and for the whole
    programme: a slice asked for is refused, not answered with the whole."""
    _statistics_caller(programme_id)
    for unsliced in ("partner", "method"):
        if unsliced in request.args:
            raise _invalid(unsliced, "the courses report is per method, for the whole programme")
    return jsonify(_reports().courses(programme_id, _date_arg("on")) | {"caught_up": _caught_up()})


@bp.get("/programmes/<programme_id>/statistics/measures")
def measures(programme_id: str) -> Response:
    _statistics_caller(programme_id)
    return jsonify(_reports().measures(programme_id, *_slice()) | {"caught_up": _caught_up()})


@bp.get("/programmes/<programme_id>/statistics/success-criteria")
def success_criteria(programme_id: str) -> Response:
    """The success criteria on a day (default today): ?on=YYYY-MM-DD, and one of ?partner= or ?method=."""
    _statistics_caller(programme_id)
    report = _reports().success_criteria(programme_id, _date_arg("on"), *_slice())
    return jsonify(report | {"caught_up": _caught_up()})


@bp.get("/programmes/<programme_id>/statistics/fidelity")
def fidelity(programme_id: str) -> Response:
    """CTI fidelity per worker and course, as of ?on= (default today) for courses still running; the evaluator
    sees each course by its pseudonym, as in the export."""
    principal = _statistics_caller(programme_id)
    reports = _reports()
    report = reports.fidelity(programme_id, _date_arg("on"))
    if principal.role is Role.EVALUATOR:
        report = pseudonymised_fidelity(report, reports, programme_id, current_app.config["PSEUDONYM_SECRET"])
    return jsonify(report | {"caught_up": _caught_up()})


@bp.get("/programmes/<programme_id>/export/<any(courses, measurements):kind>.csv")
def export(programme_id: str, kind: str) -> Response:
    """The evaluator's pseudonymised export (columns: see services/reporting/export.py and the README)."""
    _statistics_caller(programme_id)
    make = courses_csv if kind == "courses" else measurements_csv
    body = make(_reports(), programme_id, current_app.config["PSEUDONYM_SECRET"])
    return Response(
        body, mimetype="text/csv", headers={"Content-Disposition": f"attachment; filename={programme_id}-{kind}.csv"}
    )


@bp.get("/programmes/<programme_id>/status-report")
def status_report(programme_id: str) -> ResponseReturnValue:
    """The ministry-style status report on a day (?on=, default today) as a printable page; ?format=json for the
    same as JSON."""
    _statistics_caller(programme_id)
    reports = _reports()
    report = reports.status_report(programme_id, _date_arg("on"))
    if request.args.get("format") == "json":
        return jsonify(report | {"caught_up": _caught_up()})
    return render_template("status_report.html", report=report, programme=reports.programme(programme_id).to_dict())


@bp.get("/programmes/<programme_id>/dashboard")
def dashboard(programme_id: str) -> ResponseReturnValue:
    """For coordinators (and evaluators): status now or on a chosen date, intake, caseloads, success, fidelity."""
    if _page_login_needed():
        return redirect(url_for("reports.login", next=request.path))
    _statistics_caller(programme_id)
    reports, day = _reports(), _date_arg("on")
    intake_report = reports.intake(programme_id, None, None)
    programme = reports.programme(programme_id)
    start = programme.recruitment_start.isoformat()[:7]
    return render_template(
        "dashboard.html",
        programme=programme.to_dict(),
        status=reports.status_on(programme_id, day),
        intake=intake_report,
        intake_rows=[(m["month"], m["referrals"]) for m in intake_report["months"]],
        caseloads=reports.caseloads(programme_id, day, month_range(start, day.isoformat()[:7])),
        success=reports.success_criteria(programme_id, day),
        fidelity=reports.fidelity(programme_id, day),
        fidelity_criteria=FIDELITY_CRITERIA,
        caught_up=_caught_up(),
    )


def _page_login_needed() -> bool:
    return "Authorization" not in request.headers and key_in_session() is None


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Sign in to the pages with an API key; it is kept sealed in a signed, HttpOnly, SameSite=Strict cookie."""
    target = request.values.get("next", "/")
    if not _LOCAL_PATH.fullmatch(target):
        target = "/"
    if request.method == "GET":
        return render_template("login.html", next=target, error=None)
    key = request.form.get("api_key", "").strip()
    authenticator: Authenticator = current_app.extensions["authenticator"]
    if authenticator.principal(f"Bearer {key}") is None:
        return render_template("login.html", next=target, error="Ukendt nøgle / unknown key"), 401
    keep_in_session(key)
    return redirect(target)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Sign out of the pages: the cookie is emptied (the key itself stays valid until revoked)."""
    session.clear()
    return redirect("/login")


@bp.errorhandler(LookupError)
def _no_programme(e: LookupError) -> Response:
    return error_response(404, "not_found", "no such programme (or not projected yet)")


@bp.get("/programmes/<programme_id>/referrals-per-partner")
def get_referrals_per_partner(programme_id: str) -> Response:
    """Coordinators see their programme, evaluators any; a referring partner sees only its own row, and of it
    only the outcomes of its referrals."""
    principal = _statistics_caller(programme_id, Role.REFERRER)
    only = principal.partner_id if principal.role is Role.REFERRER else None
    report = _reports().referrals_per_partner(programme_id, *_period(), only_partner=only)
    if principal.role is Role.REFERRER:
        report = outcomes_only(report)
    return jsonify(report | {"caught_up": _caught_up()})


def create_app(connection: redis.Redis | None = None, settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    connection = connection if connection is not None else connect(settings)
    app = http.service_app("reporting", connection, settings, bp)
    app.config.update(
        PSEUDONYM_SECRET=settings.cpr_hmac_secret,
        SECRET_KEY=settings.session_secret,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
    )
    store = event_store(connection, settings)
    app.extensions["event_store"] = store
    app.extensions["authenticator"] = Authenticator(store)
    app.cli.add_command(projections)

    @app.get("/openapi.json")
    def openapi_document() -> Response:
        return jsonify(openapi(app))

    app.cli.add_command(log_commands)
    app.cli.add_command(vault_commands)
    app.cli.add_command(jobs_commands)
    return app


def wsgi() -> Flask:
    """For gunicorn: ``gunicorn 'services.reporting.app:wsgi()'``."""
    return http.under_gunicorn(create_app, "reporting")


def main() -> None:
    http.serve(create_app(), "REPORTING_PORT", 5002)
