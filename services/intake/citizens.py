"""Citizens, for a programme's coordinators: probable matches, erasure, and who accessed a citizen's cases."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request

from services.caseflow.projection import citizen_index_name
from services.caseflow.queries import ReadModel
from services.intake import schemas as s
from services.intake.service import NotFound, Write
from services.intake.web import (
    case_access_log,
    in_programme,
    intake,
    load,
    log_case_access,
    logged_refusal,
    written,
)
from shared.aggregates import erased_records, load_identity
from shared.authn import caller
from shared.domain.access import Role
from shared.domain.case import Case, Refused
from shared.domain.events import CitizenErased
from shared.domain.identity import (
    Identity,
    citizen_stream,
    decide_match,
    identity_stream,
    pair,
    probable_matches,
)
from shared.eventstore import AppendResult

bp = Blueprint("citizens", __name__)


def _identity(programme_id: str) -> Identity:
    return load_identity(intake().store, programme_id)


def _model() -> ReadModel:
    return ReadModel(intake().store.redis, intake().prefix)


def _citizen_cases(programme_id: str, citizen_id: str) -> list[Case]:
    """The citizen's cases in this programme (from the caseflow projection); 404 if there are none."""
    model = _model()
    ids = model.members(citizen_index_name(citizen_id))
    cases = [Case.from_stored(d) for d in model.docs([f"case:{c}" for c in ids])]
    mine = [c for c in cases if c.programme_id == programme_id]
    if not mine:
        raise NotFound("no such citizen")
    return mine


@bp.after_request
def _log_role_refusals(response: Response) -> Response:
    """As ``web.log_role_refusals`` for a case: a key whose role never serves a citizen's endpoint (an erasure, the
    access log) is refused (403) before the citizen is looked at; that attempt goes to the access log of each of
    the citizen's cases in the programme."""
    principal = g.get("principal")
    args = request.view_args or {}
    programme_id, citizen_id = args.get("programme_id"), args.get("citizen_id")
    if response.status_code != 403 or principal is None or programme_id is None or citizen_id is None:
        return response

    def record() -> None:
        for case in _citizen_cases(programme_id, citizen_id):
            log_case_access(principal, case.case_id, allowed=False)

    return logged_refusal(response, principal, record)


def _programmes_of(model: ReadModel, records: set[str]) -> dict[str, set[str]]:
    """Each programme the records have a case in, with those records."""
    case_ids = {case_id for record in records for case_id in model.members(citizen_index_name(record))}
    programmes: dict[str, set[str]] = {}
    for doc in model.docs([f"case:{c}" for c in case_ids]):
        programmes.setdefault(doc["programme_id"], set()).add(doc["citizen_id"])
    return programmes


def _person_everywhere(citizen_id: str) -> tuple[set[str], dict[str, set[str]]]:
    """Every record confirmed to be this person in any programme, and the programmes they have cases in: matches
    are decided per programme, and a record with cases in two programmes (one CPR number) can join records
    confirmed in each, so an erasure reaches them all. Grows until no programme of the records confirms another."""
    model, records, identities = _model(), {citizen_id}, dict[str, Identity]()
    while True:
        programmes = _programmes_of(model, records)
        for programme_id in programmes.keys() - identities.keys():
            identities[programme_id] = _identity(programme_id)
        grown = records.union(*(identity.person_of(r) for identity in identities.values() for r in records))
        if grown == records:
            return records, programmes
        records = grown


def _proposals(programme_id: str, identity: Identity) -> list[tuple[str, str]]:
    """Probable matches among the records not erased: an erased person's match key is still in their events, and
    must not recognise them when they are referred again (nor merge a new record into the erased one)."""
    cases = _model().cases(programme_id)
    erased = erased_records(intake().store, {case.citizen_id for case in cases})
    return probable_matches([case for case in cases if case.citizen_id not in erased], identity)


@bp.get("/programmes/<programme_id>/probable-matches")
def list_probable_matches(programme_id: str) -> Response:
    in_programme(caller(Role.COORDINATOR), programme_id)
    proposals = _proposals(programme_id, _identity(programme_id))
    return jsonify(programme_id=programme_id, matches=[{"citizen_a": a, "citizen_b": b} for a, b in proposals])


@bp.post("/programmes/<programme_id>/matches")
def decide(programme_id: str) -> Response:
    """Confirm (one person) or reject (never proposed again) a probable match."""
    principal = caller(Role.COORDINATOR)
    in_programme(principal, programme_id)
    ctx, d = load(principal, s.MatchDecisionRequest)

    def attempt() -> AppendResult:
        identity = _identity(programme_id)
        proposals = _proposals(programme_id, identity)
        event = decide_match(identity, proposals, d["citizen_a"], d["citizen_b"], d["decision"] == "confirm")
        return intake().write(ctx, d["on"], [Write(identity_stream(programme_id), [event], identity.version)])

    result = intake().retrying(ctx, attempt)
    citizen_a, citizen_b = pair(d["citizen_a"], d["citizen_b"])
    view = {"programme_id": programme_id, "decision": d["decision"], "citizen_a": citizen_a, "citizen_b": citizen_b}
    return written(result, lambda: view, f"/programmes/{programme_id}/probable-matches")


@bp.post("/programmes/<programme_id>/citizens/<citizen_id>/erasure")
def erase(programme_id: str, citizen_id: str) -> Response:
    """GDPR erasure: the citizen's keys are deleted, so their personal data is unreadable everywhere; the
    anonymous events still count. The erasure is an event, and its actor is who carried it out."""
    principal = caller(Role.COORDINATOR)
    in_programme(principal, programme_id)
    ctx, d = load(principal, s.ErasureRequest)
    _citizen_cases(programme_id, citizen_id)
    everywhere, programmes = _person_everywhere(citizen_id)
    records = sorted(everywhere)

    def shred(erased: set[str]) -> None:
        for record in erased:
            intake().vault.erase(record)

    def attempt() -> AppendResult:
        erased = erased_records(intake().store, records)
        if erased.issuperset(records):
            # Recorded before. The keys go after the events, so a process that stopped between the two left
            # them: a repeat deletes them, or the personal data would stay readable for good.
            shred(erased)
            raise Refused("already_erased", "this citizen's personal data was erased before")
        erasure = CitizenErased(requested_by=d["requested_by"])
        return intake().write(
            ctx, d["on"], [Write(citizen_stream(r), [erasure], 0) for r in records if r not in erased]
        )

    result = intake().retrying(ctx, attempt)
    # The records erased in the log, not all those the person has now: a replay's records may have grown since
    # its first request (a match confirmed meanwhile), and a record's keys go only with its recorded erasure.
    erased = erased_records(intake().store, records)
    shred(erased)
    # This programme's records only: that the person is known in another programme (which may be an addiction
    # programme's) is not this coordinator's to know, not even as a count. Each erasure is an event on its record.
    view = {
        "citizen_id": citizen_id,
        "records_erased": sorted(programmes[programme_id] & erased),
        "erased_on": d["on"].isoformat(),
    }
    return written(result, lambda: view, f"/programmes/{programme_id}/citizens/{citizen_id}/access-log")


@bp.get("/programmes/<programme_id>/citizens/<citizen_id>/access-log")
def citizen_access_log(programme_id: str, citizen_id: str) -> Response:
    """Who read or wrote any of the citizen's cases in this programme, and who tried."""
    in_programme(caller(Role.COORDINATOR), programme_id)
    cases = [c.case_id for c in _citizen_cases(programme_id, citizen_id)]
    return jsonify(citizen_id=citizen_id, entries=case_access_log(cases))
