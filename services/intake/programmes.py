"""Programmes: their rules and relation workers (as events), and views of caseloads and due assessments."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from services.caseflow.queries import cases_of_programme, overdue_assessments
from services.intake import schemas as s
from services.intake.service import NotFound, Write, programme_stream
from services.intake.web import STAFF, in_programme, intake, load, written
from shared.authn import caller
from shared.domain.access import Role
from shared.domain.events import ProgrammeChanged, ProgrammeDefined
from shared.domain.staffing import decide_add_worker, decide_capacity, decide_programme_change
from shared.events.envelope import today
from shared.eventstore import WrongExpectedVersion
from shared.http import ApiError, date_arg

bp = Blueprint("programmes", __name__)


def _programme_view(programme_id: str) -> dict[str, object]:
    return intake().programme(programme_id).to_dict()


@bp.post("/programmes")
def define_programme() -> Response:
    principal = caller(Role.COORDINATOR)
    ctx, d = load(principal, s.ProgrammeRequest)
    if principal.programme_id != d["programme_id"]:
        raise ApiError(403, "forbidden", f"your key is for programme {principal.programme_id}")
    defined = ProgrammeDefined(
        name=d["name"],
        methods=tuple(d["methods"]),
        course_months=d["course_months"],
        phases=tuple((p["name"], p["months"]) for p in d["phases"]),
        recruitment_start=d["recruitment_start"],
        recruitment_end=d["recruitment_end"],
        funding_end=d["funding_end"],
        caseload_limit=d["caseload_limit"],
        assessment_interval_months=d["assessment_interval_months"],
        scale_areas=tuple(d["scale"]["areas"]),
        scale_min=d["scale"]["min"],
        scale_max=d["scale"]["max"],
        purposes=tuple(d["purposes"]),
        targets=d["targets"],
    )
    pid = d["programme_id"]
    try:
        result = intake().write(ctx, today(), [Write(programme_stream(pid), [defined], 0)])
    except WrongExpectedVersion:
        raise ApiError(409, "programme_exists", f"programme {pid} is already defined; change it instead") from None
    return written(result, lambda: _programme_view(pid), f"/programmes/{pid}")


@bp.get("/programmes/<programme_id>")
def get_programme(programme_id: str) -> Response:
    in_programme(caller(*STAFF), programme_id)
    return jsonify(_programme_view(programme_id))


@bp.post("/programmes/<programme_id>/changes")
def change_programme(programme_id: str) -> Response:
    """E.g. a funding extension: every course's planned end follows at once."""
    principal = caller(Role.COORDINATOR)
    in_programme(principal, programme_id)
    ctx, d = load(principal, s.ProgrammeChangeRequest)
    change = ProgrammeChanged(
        **{k: d[k] for k in ("recruitment_start", "recruitment_end", "funding_end", "caseload_limit")}
    )
    result = intake().on_programme(ctx, programme_id, d["on"], lambda p, c: [decide_programme_change(p, c, change)])
    return written(result, lambda: _programme_view(programme_id), f"/programmes/{programme_id}")


@bp.post("/programmes/<programme_id>/workers")
def add_worker(programme_id: str) -> Response:
    principal = caller(Role.COORDINATOR)
    in_programme(principal, programme_id)
    ctx, d = load(principal, s.WorkerRequest)
    result = intake().on_programme(
        ctx, programme_id, d["on"], lambda p, c: [decide_add_worker(p, d["worker_id"], d["method"], d["capacity"])]
    )
    return written(result, lambda: _programme_view(programme_id), f"/programmes/{programme_id}")


@bp.post("/programmes/<programme_id>/workers/<worker_id>/capacity")
def change_capacity(programme_id: str, worker_id: str) -> Response:
    principal = caller(Role.COORDINATOR)
    in_programme(principal, programme_id)
    ctx, d = load(principal, s.CapacityRequest)
    result = intake().on_programme(
        ctx, programme_id, d["on"], lambda p, c: [decide_capacity(p, c, worker_id, d["capacity"])]
    )
    return written(result, lambda: _programme_view(programme_id), f"/programmes/{programme_id}")


@bp.get("/programmes/<programme_id>/caseload")
def get_caseload(programme_id: str) -> Response:
    """Who works with whom, and who waits (folded from the caseload stream: always current)."""
    in_programme(caller(Role.COORDINATOR), programme_id)
    programme = intake().programme(programme_id)
    caseload = intake().caseload(programme_id)
    workers = [
        {
            "worker_id": worker_id,
            "method": programme.workers[worker_id].method,
            "capacity": programme.capacity_of(worker_id),
            "load": caseload.load(worker_id),
            "cases": caseload.cases_of(worker_id),
        }
        for worker_id in sorted(programme.workers)
    ]
    # waitlisted_for: the method whose slot each waits for (None: any, for a wait recorded before the waitlist
    # kept the method; such a course, once enrolled, waits for its own method)
    waitlist = [
        {"case_id": c, "since": since.isoformat(), "waitlisted_for": caseload.waiting_for.get(c)}
        for c, since in caseload.longest_waiting_first()
    ]
    return jsonify(programme_id=programme_id, workers=workers, waitlist=waitlist, version=caseload.version)


@bp.get("/programmes/<programme_id>/cases")
def list_cases(programme_id: str) -> Response:
    """The caseflow projection's view of a programme's cases (eventually consistent with the log)."""
    in_programme(caller(Role.COORDINATOR), programme_id)
    return jsonify(
        programme_id=programme_id,
        cases=cases_of_programme(intake().store.redis, current_app.config["KEY_PREFIX"], programme_id),
    )


@bp.get("/programmes/<programme_id>/workers/<worker_id>/overdue-assessments")
def list_overdue(programme_id: str, worker_id: str) -> Response:
    """Courses of a worker whose next star is overdue on a date (default today), from the caseflow projection."""
    principal = caller(*STAFF)
    in_programme(principal, programme_id)
    if principal.role is Role.WORKER and principal.worker_id != worker_id:
        raise NotFound("no such worker")
    on = date_arg("on") or today()
    rows = overdue_assessments(intake().store.redis, current_app.config["KEY_PREFIX"], programme_id, worker_id, on)
    return jsonify(programme_id=programme_id, worker_id=worker_id, on=on.isoformat(), overdue=rows)
