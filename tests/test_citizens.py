"""Citizens: one citizen per CPR number, no existence leak, probable matches, erasure (both backends)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from collections.abc import Iterator
from datetime import date
from typing import Any, cast

import pytest
import redis
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from services.intake.app import create_app
from services.intake.service import cpr_stream
from shared.bootstrap import event_store
from shared.config import Settings
from shared.domain.cpr import cpr_fingerprint, parse_cpr
from shared.domain.events import CprLinked, MatchConfirmed
from shared.domain.identity import identity_stream, pair
from shared.events import NewEvent
from shared.events.envelope import start_of_day
from shared.eventstore import EventStore
from shared.redis_values import stream_entries
from shared.vault import ERASED, Vault
from tests.conftest import COPENHAGEN, PARTNER, STAFF, referral_body
from tests.support import auth, grant_test_keys, run_workers

LIVA = auth("livarehab")


def refer(intake: FlaskClient, key: dict[str, str], **citizen: Any) -> Any:
    response = intake.post("/referrals", json=referral_body(citizen=citizen), headers=key)
    assert response.status_code == 201, response.get_json()
    return response


def staff_view(intake: FlaskClient, case: str) -> dict[str, Any]:
    body: dict[str, Any] = intake.get(f"/cases/{case}", headers=STAFF).get_json()
    return body


def every_byte(connection: redis.Redis) -> Iterator[bytes]:
    """Every key name and every value in Redis, whatever its type: strings, hashes, lists, sets, streams."""
    for key in connection.scan_iter(count=1000):
        yield key
        kind = cast(bytes, connection.type(key)).decode()
        if kind == "string":
            yield cast(bytes | None, connection.get(key)) or b""
        elif kind == "hash":
            for field, value in cast(dict[bytes, bytes], connection.hgetall(key)).items():
                yield field + b"=" + value
        elif kind == "list":
            yield from cast(list[bytes], connection.lrange(key, 0, -1))
        elif kind == "set":
            yield from cast(set[bytes], connection.smembers(key))
        elif kind == "zset":
            scored = cast(list[tuple[bytes, float]], connection.zrange(key, 0, -1, withscores=True))
            yield from (member for member, _ in scored)
        elif kind == "stream":
            for entry_id, fields in stream_entries(connection.xrange(key)):
                yield entry_id
                for field, value in fields.items():
                    yield field + b"=" + value
        else:
            raise AssertionError(f"unexpected {kind} at {key!r}")


def test_one_cpr_number_is_one_citizen_and_each_partner_sees_its_own(intake: FlaskClient, cph: str) -> None:
    by_reden = refer(intake, PARTNER, alias="Maja", cpr="010190-1234").get_json()["case_id"]
    by_liva = refer(intake, LIVA, cpr="0101901234").get_json()["case_id"]
    assert by_reden != by_liva
    assert staff_view(intake, by_reden)["citizen_id"] == staff_view(intake, by_liva)["citizen_id"]
    assert staff_view(intake, by_reden)["age_band"] == "25_plus"  # born 1990, referred 2016
    for key, own, other in ((PARTNER, by_reden, by_liva), (LIVA, by_liva, by_reden)):
        assert intake.get(f"/referrals/{own}", headers=key).status_code == 200
        assert intake.get(f"/referrals/{other}", headers=key).status_code == 404


def test_racing_referrals_of_one_new_cpr_number_make_one_citizen(
    connection: redis.Redis, cph: str, intake: FlaskClient
) -> None:
    answers: list[TestResponse] = []
    app = create_app(connection, Settings.from_env({}))

    def send() -> None:
        answers.append(
            app.test_client().post("/referrals", json=referral_body(citizen={"cpr": "121212-1212"}), headers=PARTNER)
        )

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [201] * 6, [a.get_json() for a in answers]  # none gives up racing
    assert len({staff_view(intake, a.get_json()["case_id"])["citizen_id"] for a in answers}) == 1


LINKS_METRIC = 'caseflow_events_appended_total{type="CprLinked"}'


def test_a_partner_cannot_learn_whether_a_cpr_number_is_known(intake: FlaskClient, cph: str) -> None:
    refer(intake, PARTNER, cpr="010190-1234")  # known to the programme, through Reden

    def answer(cpr: str) -> tuple[int, dict[str, Any], int, list[str]]:
        response = refer(intake, LIVA, cpr=cpr)
        body = {k: v for k, v in response.get_json().items() if k not in ("case_id", "positions")}
        headers = sorted(set(response.headers.keys()) - {"X-Request-Id", "Location"})
        # The positions differ, their number must not: a new number's link is written too, but not answered.
        return response.status_code, body, len(response.get_json()["positions"]), headers

    known, unknown = answer("010190-1234"), answer("020290-2345")
    assert known == unknown
    read_known = intake.get(f"/referrals/{refer(intake, LIVA, cpr='010190-1234').get_json()['case_id']}", headers=LIVA)
    read_unknown = intake.get(
        f"/referrals/{refer(intake, LIVA, cpr='030390-3456').get_json()['case_id']}", headers=LIVA
    )

    def strip(r: TestResponse) -> dict[str, Any]:
        return {k: v for k, v in r.get_json().items() if k != "case_id"}

    assert (read_known.status_code, strip(read_known)) == (read_unknown.status_code, strip(read_unknown))

    def links_counted() -> float:
        metrics = intake.get("/metrics").get_data(as_text=True).splitlines()  # /metrics asks for no key
        return sum(float(line.split()[-1]) for line in metrics if line.startswith(LINKS_METRIC))

    def footprint(cpr: str) -> tuple[int, float]:
        """What else a partner sees of a referral: how far the log moved by its next referral's answer, and how
        far /metrics' count of CPR links moved."""
        counted = links_counted()
        first = refer(intake, LIVA, cpr=cpr).get_json()["positions"][-1]
        return refer(intake, LIVA).get_json()["positions"][-1] - first, links_counted() - counted

    assert footprint("010190-1234") == footprint("040490-4567")


def test_probable_matches_without_cpr_and_rejections_are_remembered(
    intake: FlaskClient, cph: str, connection: redis.Redis
) -> None:
    ids = {}
    for name, key, alias, born in (
        ("a", PARTNER, "Maja", "1990-05-01"),
        ("b", LIVA, "  maja ", "1990-05-01"),
        ("other-day", PARTNER, "Maja", "1991-01-01"),
        ("ole", LIVA, "Ole", "1990-05-01"),
    ):
        case = refer(intake, key, alias=alias, birth_date=born).get_json()["case_id"]
        ids[name] = staff_view(intake, case)["citizen_id"]
    run_workers(connection, "caseflow")
    url = "/programmes/demo-cph/probable-matches"
    first = intake.get(url, headers=STAFF).get_json()["matches"]
    assert first == [{"citizen_a": min(ids["a"], ids["b"]), "citizen_b": max(ids["a"], ids["b"])}]
    assert intake.get(url, headers=PARTNER).status_code == 403

    reject = {"citizen_a": ids["a"], "citizen_b": ids["b"], "decision": "reject"}
    keyed = {**STAFF, "Idempotency-Key": "kk-reject-a-b"}
    decided = intake.post("/programmes/demo-cph/matches", json=reject, headers=keyed)
    assert decided.status_code == 201
    assert intake.get(url, headers=STAFF).get_json()["matches"] == []
    again = intake.post("/programmes/demo-cph/matches", json=reject, headers=STAFF)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "not_proposed"
    # Retried with its idempotency key (its answer was lost), the decision gets its answer, not "decided already".
    replayed = intake.post("/programmes/demo-cph/matches", json=reject, headers=keyed)
    assert replayed.status_code == 201 and replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.get_json() == decided.get_json()

    third = staff_view(intake, refer(intake, PARTNER, alias="MAJA", birth_date="1990-05-01").get_json()["case_id"])
    run_workers(connection, "caseflow")
    proposed = {tuple(sorted(m.values())) for m in intake.get(url, headers=STAFF).get_json()["matches"]}
    assert proposed == {tuple(sorted((ids["a"], third["citizen_id"]))), tuple(sorted((ids["b"], third["citizen_id"])))}
    confirm = {"citizen_a": ids["a"], "citizen_b": third["citizen_id"], "decision": "confirm"}
    assert intake.post("/programmes/demo-cph/matches", json=confirm, headers=STAFF).status_code == 201
    assert {tuple(sorted(m.values())) for m in intake.get(url, headers=STAFF).get_json()["matches"]} == {
        tuple(sorted((ids["b"], third["citizen_id"])))
    }


def test_a_confirmed_match_is_one_citizen_in_the_reports(
    intake: FlaskClient, reporting: FlaskClient, cph: str, connection: redis.Redis
) -> None:
    """Referred by two partners without a CPR number, two records are one citizen once a coordinator confirms
    the match: counted once from the first referral's day, in the programme and in each partner's figures."""
    status = "/programmes/demo-cph/statistics/status"

    def distinct(day: str, partner: str | None = None) -> int:
        query = f"?on={day}" + (f"&partner={partner}" if partner else "")
        count: int = reporting.get(status + query, headers=STAFF).get_json()["distinct_citizens"]
        return count

    for key, day in ((PARTNER, "2016-01-05"), (LIVA, "2016-01-20")):
        body = referral_body(referred_on=day, citizen={"alias": "Maja", "birth_date": "1990-05-05"})
        assert intake.post("/referrals", json=body, headers=key).status_code == 201
    run_workers(connection)
    assert (distinct("2016-01-10"), distinct("2016-02-01")) == (1, 2)
    apart = reporting.get(status + "?on=2016-02-01", headers=STAFF).get_json()
    assert apart["citizens"]["referred"] == 2  # until a coordinator confirms the match
    [match] = intake.get("/programmes/demo-cph/probable-matches", headers=STAFF).get_json()["matches"]
    confirmed = intake.post("/programmes/demo-cph/matches", json=match | {"decision": "confirm"}, headers=STAFF)
    assert confirmed.status_code == 201
    run_workers(connection)
    assert (distinct("2016-01-10"), distinct("2016-02-01")) == (1, 1)
    assert (distinct("2016-02-01", "reden"), distinct("2016-02-01", "livarehab")) == (1, 1)
    both = reporting.get(status + "?on=2016-02-01", headers=STAFF).get_json()
    assert (both["counts"]["referred"], both["citizens"]["referred"]) == (2, 1)  # two referrals, one citizen
    intake_report = reporting.get("/programmes/demo-cph/statistics/intake?from=2016-01&to=2016-01", headers=STAFF)
    assert [(m["referrals"], m["new_citizens"]) for m in intake_report.get_json()["months"]] == [(2, 1)]


def test_a_confirmed_match_is_one_young_person_in_the_success_criteria(
    intake: FlaskClient, reporting: FlaskClient, cph: str, connection: redis.Redis
) -> None:
    """Two records without a CPR number, each enrolled: one moved into a home, the other is recorded homeless
    later. Apart they are one young person who kept the home; confirmed as one, a person who lost it."""
    cases = []
    for key, day in ((PARTNER, "2016-01-05"), (LIVA, "2016-01-20")):
        body = referral_body(referred_on=day, citizen={"alias": "Maja", "birth_date": "1990-05-05"})
        case = intake.post("/referrals", json=body, headers=key).get_json()["case_id"]
        for path, command in (("referrals/{}/assessment", {}), ("cases/{}/enrolment", {"scores": {"housing": 3}})):
            answer = intake.post("/" + path.format(case), json=command | {"on": "2016-02-01"}, headers=STAFF)
            assert answer.status_code == 201, answer.get_json()
        cases.append(case)
    for case, day, situation in ((cases[0], "2016-02-10", "permanent"), (cases[1], "2016-03-01", "homeless")):
        answer = intake.post(f"/cases/{case}/housing", json={"on": day, "situation": situation}, headers=STAFF)
        assert answer.status_code == 201, answer.get_json()
    run_workers(connection)

    def still_housed() -> tuple[int, int]:
        url = "/programmes/demo-cph/statistics/success-criteria?on=2016-04-01"
        report = reporting.get(url, headers=STAFF).get_json()
        [row] = [r for r in report["criteria"] if r["criterion"] == "still_housed"]
        return row["numerator"], row["denominator"]

    assert still_housed() == (1, 1)
    [match] = intake.get("/programmes/demo-cph/probable-matches", headers=STAFF).get_json()["matches"]
    assert (
        intake.post("/programmes/demo-cph/matches", json=match | {"decision": "confirm"}, headers=STAFF).status_code
        == 201
    )
    run_workers(connection)
    assert still_housed() == (0, 1)


def test_a_citizen_confirmed_as_one_is_new_in_the_month_of_the_first_referral(
    intake: FlaskClient, reporting: FlaskClient, cph: str, connection: redis.Redis
) -> None:
    """Referred by Reden in January and by LivaRehab in February, confirmed as one person: a new citizen in
    January, none in February; in each partner's figures, new to that partner in its own month."""
    for key, day in ((PARTNER, "2016-01-05"), (LIVA, "2016-02-03")):
        body = referral_body(referred_on=day, citizen={"alias": "Maja", "birth_date": "1990-05-05"})
        assert intake.post("/referrals", json=body, headers=key).status_code == 201
    run_workers(connection)
    [match] = intake.get("/programmes/demo-cph/probable-matches", headers=STAFF).get_json()["matches"]
    confirmed = intake.post("/programmes/demo-cph/matches", json=match | {"decision": "confirm"}, headers=STAFF)
    assert confirmed.status_code == 201
    run_workers(connection)

    def new_citizens(query: str) -> list[tuple[str, int, int]]:
        url = f"/programmes/demo-cph/statistics/intake?from=2016-01&to=2016-02{query}"
        months = reporting.get(url, headers=STAFF).get_json()["months"]
        return [(m["month"], m["referrals"], m["new_citizens"]) for m in months]

    assert new_citizens("") == [("2016-01", 1, 1), ("2016-02", 1, 0)]
    assert new_citizens("&partner=reden") == [("2016-01", 1, 1), ("2016-02", 0, 0)]
    assert new_citizens("&partner=livarehab") == [("2016-01", 0, 0), ("2016-02", 1, 1)]


def export_rows(reporting: FlaskClient, kind: str) -> list[dict[str, str]]:
    response = reporting.get(f"/programmes/demo-cph/export/{kind}.csv", headers=auth("evaluator"))
    assert response.status_code == 200
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_the_export_gives_one_person_one_pseudonym_and_leaves_out_an_erased_citizen(
    intake: FlaskClient, reporting: FlaskClient, cph: str, connection: redis.Redis
) -> None:
    """A confirmed match is one pseudonym in the evaluator's export; after an erasure the person's rows are gone
    from it (a stable pseudonym would keep linking them to earlier exports), while the statistics still count them."""
    maja = referral_body(referred_on="2016-01-05", citizen={"alias": "Maja", "birth_date": "1990-05-05"})
    assert intake.post("/referrals", json=maja, headers=PARTNER).status_code == 201
    assert intake.post("/referrals", json=maja | {"referred_on": "2016-01-20"}, headers=LIVA).status_code == 201
    ole = refer(intake, LIVA, alias="Ole").get_json()["case_id"]
    intake.post(f"/referrals/{ole}/assessment", json={"on": "2016-01-21"}, headers=STAFF)
    intake.post(f"/cases/{ole}/enrolment", json={"on": "2016-02-01", "scores": {"housing": 3}}, headers=STAFF)
    run_workers(connection)
    assert len({row["citizen"] for row in export_rows(reporting, "courses")}) == 3  # not yet known as one

    [match] = intake.get("/programmes/demo-cph/probable-matches", headers=STAFF).get_json()["matches"]
    assert (
        intake.post("/programmes/demo-cph/matches", json=match | {"decision": "confirm"}, headers=STAFF).status_code
        == 201
    )
    run_workers(connection)
    courses = export_rows(reporting, "courses")
    assert len(courses) == 3 and len({row["citizen"] for row in courses}) == 2
    ole_pseudonym = next(
        row["citizen"] for row in courses if row["referring_partner"] == "livarehab" and row["enrolled_on"]
    )
    statistics = reporting.get("/programmes/demo-cph/referrals-per-partner", headers=STAFF).get_json()

    erased = intake.post(
        f"/programmes/demo-cph/citizens/{match['citizen_a']}/erasure", json={"requested_by": "citizen"}, headers=STAFF
    )
    assert erased.status_code == 201 and len(erased.get_json()["records_erased"]) == 2
    run_workers(connection)
    assert [row["citizen"] for row in export_rows(reporting, "courses")] == [ole_pseudonym]
    assert {row["citizen"] for row in export_rows(reporting, "measurements")} == {ole_pseudonym}
    assert reporting.get("/programmes/demo-cph/referrals-per-partner", headers=STAFF).get_json() == statistics


def test_erasure_leaves_no_personal_byte_and_changes_no_statistic(
    intake: FlaskClient, reporting: FlaskClient, cph: str, connection: redis.Redis, store: EventStore
) -> None:
    secrets = [b"Maja", b"Hansen", b"0101901234", b"010190-1234", b"1990-01-01", b"sister", b"Valby"]
    maja = refer(intake, PARTNER, alias="Maja Hansen", cpr="010190-1234").get_json()["case_id"]
    ole = refer(intake, LIVA, alias="Ole").get_json()["case_id"]
    for case in (maja, ole):
        intake.post(f"/referrals/{case}/assessment", json={"on": "2016-01-20"}, headers=STAFF)
        intake.post(f"/cases/{case}/enrolment", json={"on": "2016-02-01", "scores": {"housing": 3}}, headers=STAFF)
    intake.post(
        f"/cases/{maja}/goals",
        json={"on": "2016-02-01", "life_area": "network", "description": "call Maja's sister"},
        headers=STAFF,
    )
    intake.post(
        f"/cases/{maja}/phase",
        json={"on": "2016-03-01", "phase": "phase_2", "reason": "housed in Valby"},
        headers=STAFF,
    )
    run_workers(connection)
    before = staff_view(intake, maja)
    assert before["citizen_alias"] == "Maja Hansen" and before["goals"][0]["description"] == "call Maja's sister"
    report_before = reporting.get("/programmes/demo-cph/referrals-per-partner", headers=STAFF).get_json()
    cases_before = intake.get("/programmes/demo-cph/cases", headers=STAFF).get_json()["cases"]

    citizen = before["citizen_id"]
    erased = intake.post(
        f"/programmes/demo-cph/citizens/{citizen}/erasure", json={"requested_by": "citizen"}, headers=STAFF
    )
    assert erased.status_code == 201, erased.get_json()
    again = intake.post(
        f"/programmes/demo-cph/citizens/{citizen}/erasure", json={"requested_by": "citizen"}, headers=STAFF
    )
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_erased"
    run_workers(connection)

    after = staff_view(intake, maja)
    assert after["citizen_alias"] == ERASED and after["goals"][0]["description"] == ERASED
    assert after["phases"][-1]["reason"] == ERASED
    assert (after["status"], after["enrolled_on"], after["course"]) == (
        before["status"],
        before["enrolled_on"],
        before["course"],
    )
    assert staff_view(intake, ole)["citizen_alias"] == "Ole"  # nobody else's data is touched
    vault = Vault(connection, "cf", Settings.from_env({}).master_key)
    assert not vault.has_key(citizen)
    assert vault.reveal(store.read_stream(maja)[0].payload.citizen_alias) == ERASED  # type: ignore[attr-defined]

    everything = list(every_byte(connection))
    log_export = json.dumps([e.__dict__ for e in store.read_all(limit=100_000)], default=str).encode()
    for secret in secrets:
        assert not any(secret in chunk for chunk in everything), secret
        assert secret not in log_export, secret

    assert reporting.get("/programmes/demo-cph/referrals-per-partner", headers=STAFF).get_json() == report_before
    assert intake.get("/programmes/demo-cph/cases", headers=STAFF).get_json()["cases"] == cases_before
    [erasure] = store.read_stream(f"citizen-{citizen.removeprefix('citizen-')}")
    assert erasure.event_type == "CitizenErased" and erasure.actor.startswith("kk-socialforvaltning:")
    assert erasure.payload.requested_by == "citizen"  # type: ignore[attr-defined]

    log = intake.get(f"/programmes/demo-cph/citizens/{citizen}/access-log", headers=STAFF).get_json()["entries"]
    assert {e["case_id"] for e in log} == {maja} and log

    # Free text sent after the erasure is not stored: sealing it would make a new key, readable and unerasable.
    later = intake.post(
        f"/cases/{maja}/goals",
        json={"on": "2016-03-02", "life_area": "network", "description": "visit the sister in Valby"},
        headers=STAFF,
    )
    assert later.status_code == 201 and later.get_json()["goals"][-1]["description"] == ERASED
    run_workers(connection)
    assert not vault.has_key(citizen)
    everything = list(every_byte(connection))
    assert not any(secret in chunk for chunk in everything for secret in (b"sister", b"Valby"))


def test_a_refused_attempt_at_a_citizens_endpoint_is_logged_at_their_cases(
    intake: FlaskClient, cph: str, connection: redis.Redis
) -> None:
    """A worker's or evaluator's key is refused (403) at a citizen's erasure and access log for its role, before the
    citizen is looked at: the attempt was in no access log, unlike one at a case."""
    case = refer(intake, PARTNER, alias="Maja").get_json()["case_id"]
    run_workers(connection)
    citizen = staff_view(intake, case)["citizen_id"]
    erasure = intake.post(f"/programmes/{cph}/citizens/{citizen}/erasure", json={}, headers=auth("anna"))
    assert erasure.status_code == 403
    nobody = "citizen-" + "0" * 32
    assert intake.get(f"/programmes/{cph}/citizens/{nobody}/access-log", headers=auth("evaluator")).status_code == 403
    assert intake.get(f"/programmes/{cph}/citizens/{citizen}/access-log", headers=auth("evaluator")).status_code == 403
    log = intake.get(f"/programmes/{cph}/citizens/{citizen}/access-log", headers=STAFF).get_json()["entries"]
    assert [(e["case_id"], e["role"], e["action"], e["allowed"]) for e in log[-2:]] == [
        (case, "worker", "write citizens.erase", False),
        (case, "evaluator", "read citizens.citizen_access_log", False),
    ]
    assert staff_view(intake, case)["citizen_alias"] == "Maja"  # nothing erased


def test_a_refusal_stays_a_refusal_when_its_access_log_cannot_be_written(
    real_connection: redis.Redis, caplog: Any
) -> None:
    """Redis refusing writes (out of memory here) while a refused attempt is logged: the answer was a 500, and the
    attempt in no log. Now it stays the 403, and the service's own log says which key's attempt is missing."""
    settings = Settings.from_env({})
    grant_test_keys(event_store(real_connection, settings))
    intake = create_app(real_connection, settings).test_client()
    assert intake.post("/programmes", json=COPENHAGEN, headers=STAFF).status_code == 201
    case = refer(intake, PARTNER, alias="Maja").get_json()["case_id"]
    run_workers(real_connection)
    citizen = staff_view(intake, case)["citizen_id"]
    before = {str(k): str(v) for k, v in real_connection.config_get("maxmemory*").items()}
    real_connection.config_set("maxmemory-policy", "noeviction")
    real_connection.config_set("maxmemory", 1)
    try:
        contact = intake.post(f"/cases/{case}/contacts", json={"on": "2016-02-01"}, headers=auth("evaluator"))
        access_log = intake.get(f"/programmes/demo-cph/citizens/{citizen}/access-log", headers=auth("evaluator"))
    finally:
        real_connection.config_set("maxmemory", before["maxmemory"])
        real_connection.config_set("maxmemory-policy", before["maxmemory-policy"])
    for refused in (contact, access_log):
        assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    missing = [r.getMessage() for r in caplog.records if "is missing from the access log" in r.getMessage()]
    _, partner, key_id, _ = auth("evaluator")["Authorization"].split(".")
    assert missing == [
        f"a refused attempt by {partner}:{key_id} at {endpoint} is missing from the access log (of its case, or "
        "some of its citizen's): OutOfMemoryError"
        for endpoint in ("courses.record_situation", "citizens.citizen_access_log")
    ]
    assert case not in caplog.text and citizen not in caplog.text and "Maja" not in caplog.text


def test_nothing_personal_reaches_a_log_line(
    intake: FlaskClient, cph: str, connection: redis.Redis, caplog: Any
) -> None:
    caplog.set_level("DEBUG")
    case = refer(intake, PARTNER, alias="Maja Hansen", cpr="010190-1234").get_json()["case_id"]
    intake.post(f"/referrals/{case}/assessment", json={"on": "2016-01-20"}, headers=STAFF)
    intake.post(f"/cases/{case}/enrolment", json={"on": "2016-02-01", "scores": {"housing": 3}}, headers=STAFF)
    goal = {"on": "2016-02-01", "life_area": "network", "description": "call Maja's sister"}
    assert intake.post(f"/cases/{case}/goals", json=goal, headers=STAFF).status_code == 201
    intake.post(
        "/referrals", json=referral_body(citizen={"cpr": "320190-1234", "alias": "Maja Hansen"}), headers=PARTNER
    )  # an invalid CPR: refused without repeating it
    run_workers(connection)
    citizen = staff_view(intake, case)["citizen_id"]
    intake.post(f"/programmes/demo-cph/citizens/{citizen}/erasure", json={"requested_by": "citizen"}, headers=STAFF)
    assert caplog.records, "the flow should have logged something (workers, durability)"
    for secret in ("Maja", "Hansen", "0101901234", "010190-1234", "320190", "1990-01-01", "sister"):
        assert secret not in caplog.text, secret


def test_an_idempotency_key_keeps_no_plain_hash_of_a_body_with_a_cpr_number(
    intake: FlaskClient, cph: str, connection: redis.Redis
) -> None:
    """A retry key's fingerprint of its request is kept for a week. A plain SHA-256 of a body holding a CPR number
    would give the number back to anyone who tries the few million there are (with the rest of the body read
    from the referral's event)."""
    body = referral_body(citizen={"cpr": "070761-4285"})
    keyed = {**PARTNER, "Idempotency-Key": "retry-1"}
    assert intake.post("/referrals", json=body, headers=keyed).status_code == 201
    canonical = json.dumps({"path": "/referrals", "body": body}, sort_keys=True, separators=(",", ":"))
    plain = hashlib.sha256(canonical.encode()).hexdigest().encode()
    stored = [k for k in connection.scan_iter(match="cf:{log}:idempotency:*")]
    assert len(stored) == 1 and not any(plain in chunk for chunk in every_byte(connection))
    assert intake.post("/referrals", json=body, headers=keyed).headers["Idempotent-Replayed"] == "true"


class Stopped(Exception):
    """The process stops here (an exception where a real process would have died)."""


def test_an_erasure_stopped_between_its_event_and_its_keys_is_finished_by_asking_again(
    intake: FlaskClient, cph: str, connection: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The erasure's event is appended before the citizen's keys are deleted (deleted first, a failed append would
    leave data gone with no record of its erasure). A process that stops between the two leaves the keys: asking
    again, refused as erased before, deletes them; with the first request's idempotency key it gets its answer."""
    maja = refer(intake, PARTNER, alias="Maja Hansen").get_json()["case_id"]
    ole = refer(intake, LIVA, alias="Ole").get_json()["case_id"]
    run_workers(connection, "caseflow")
    vault = Vault(connection, "cf", Settings.from_env({}).master_key)
    for case, key in ((maja, {"Idempotency-Key": "kk-erase-maja"}), (ole, {})):
        citizen = staff_view(intake, case)["citizen_id"]
        url = f"/programmes/demo-cph/citizens/{citizen}/erasure"
        body = {"requested_by": "citizen"}

        def stop(self: Vault, citizen_id: str) -> None:
            raise Stopped

        monkeypatch.setattr(Vault, "erase", stop)
        assert intake.post(url, json=body, headers=STAFF | key).status_code == 500
        monkeypatch.undo()
        assert vault.has_key(citizen) and staff_view(intake, case)["citizen_alias"] != ERASED
        again = intake.post(url, json=body, headers=STAFF | key)
        if key:
            assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
            assert again.get_json()["records_erased"] == [citizen]
        else:
            assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_erased"
        assert not vault.has_key(citizen) and staff_view(intake, case)["citizen_alias"] == ERASED


def test_a_replayed_erasure_deletes_the_keys_of_the_records_it_erased_and_no_others(
    intake: FlaskClient, cph: str, connection: redis.Redis, store: EventStore
) -> None:
    """A match decided on proposals read just before an erasure, appended just after it, joins a second record to
    the person. The erasure's replay (same key) writes nothing: it must not delete that record's keys (its data
    would be gone with no erasure in the log), nor name it."""
    a_case = refer(intake, PARTNER, alias="Maja", birth_date="1990-05-01").get_json()["case_id"]
    b_case = refer(intake, LIVA, alias="Maja", birth_date="1990-05-01").get_json()["case_id"]
    run_workers(connection, "caseflow")
    a, b = staff_view(intake, a_case)["citizen_id"], staff_view(intake, b_case)["citizen_id"]
    url, keyed = f"/programmes/demo-cph/citizens/{a}/erasure", {**STAFF, "Idempotency-Key": "kk-erase-a"}
    first = intake.post(url, json={"requested_by": "citizen"}, headers=keyed)
    assert first.status_code == 201 and first.get_json()["records_erased"] == [a]
    stream = identity_stream("demo-cph")
    store.append(stream, [NewEvent(stream, MatchConfirmed(*pair(a, b)), start_of_day(date(2016, 2, 1)), "test")])
    run_workers(connection, "caseflow")
    again = intake.post(url, json={"requested_by": "citizen"}, headers=keyed)
    assert again.headers["Idempotent-Replayed"] == "true" and again.get_json() == first.get_json()
    assert staff_view(intake, b_case)["citizen_alias"] == "Maja"
    assert staff_view(intake, a_case)["citizen_alias"] == ERASED


def test_the_evaluator_sees_fidelity_by_the_exports_pseudonyms_and_no_erased_course(
    intake: FlaskClient, reporting: FlaskClient, cph: str, connection: redis.Redis
) -> None:
    """The coordinator sees each course's id in the fidelity report; the evaluator, as in the export, its
    pseudonym, and after an erasure not the course at all (its share still counts it, as every statistic)."""
    intake.post(
        f"/programmes/{cph}/workers", json={"worker_id": "anna", "method": "cti", "on": "2016-01-02"}, headers=STAFF
    )
    cases = []
    for alias in ("Maja", "Ole"):
        case = refer(intake, LIVA, alias=alias).get_json()["case_id"]
        intake.post(f"/referrals/{case}/assessment", json={"on": "2016-01-21"}, headers=STAFF)
        intake.post(f"/cases/{case}/enrolment", json={"on": "2016-02-01", "scores": {"housing": 3}}, headers=STAFF)
        assignment = {"worker_id": "anna", "on": "2016-02-01"}
        assert intake.post(f"/cases/{case}/assignment", json=assignment, headers=STAFF).status_code == 201
        cases.append(case)
    run_workers(connection)

    def fidelity(key: dict[str, str]) -> dict[str, Any]:
        response = reporting.get(f"/programmes/{cph}/statistics/fidelity?on=2016-03-01", headers=key)
        assert response.status_code == 200
        body: dict[str, Any] = response.get_json()
        return body

    [coordinators] = fidelity(STAFF)["workers"]
    assert sorted(row["case_id"] for row in coordinators["courses"]) == sorted(cases)
    [evaluators] = fidelity(auth("evaluator"))["workers"]
    assert not any(case in json.dumps(evaluators) for case in cases)
    exported = {row["course"] for row in export_rows(reporting, "courses")}
    assert {row["course"] for row in evaluators["courses"]} == exported and len(exported) == 2
    strip = [{k: v for k, v in row.items() if k not in ("case_id", "course")} for row in coordinators["courses"]]
    assert [{k: v for k, v in row.items() if k != "course"} for row in evaluators["courses"]] in (strip, strip[::-1])

    maja = staff_view(intake, cases[0])["citizen_id"]
    erased = intake.post(f"/programmes/{cph}/citizens/{maja}/erasure", json={"requested_by": "citizen"}, headers=STAFF)
    assert erased.status_code == 201
    run_workers(connection)
    [after] = fidelity(auth("evaluator"))["workers"]
    assert {row["course"] for row in after["courses"]} == {row["course"] for row in export_rows(reporting, "courses")}
    assert len(after["courses"]) == 1 and after["share_meeting"] == evaluators["share_meeting"]


def test_an_erased_record_is_not_proposed_as_a_match_of_a_new_referral(
    intake: FlaskClient, cph: str, connection: redis.Redis
) -> None:
    """An erased person's match key stays in their events: referred again, they must not be recognised."""
    maja = {"alias": "Maja", "birth_date": "1990-05-05"}
    first = refer(intake, PARTNER, **maja).get_json()["case_id"]
    run_workers(connection, "caseflow")
    citizen = staff_view(intake, first)["citizen_id"]
    erasure = {"requested_by": "citizen"}
    assert intake.post(f"/programmes/{cph}/citizens/{citizen}/erasure", json=erasure, headers=STAFF).status_code == 201
    again = refer(intake, LIVA, **maja).get_json()["case_id"]
    run_workers(connection, "caseflow")
    assert intake.get(f"/programmes/{cph}/probable-matches", headers=STAFF).get_json()["matches"] == []
    pair = sorted([citizen, staff_view(intake, again)["citizen_id"]])
    decision = {"citizen_a": pair[0], "citizen_b": pair[1], "decision": "confirm"}
    refused = intake.post(f"/programmes/{cph}/matches", json=decision, headers=STAFF)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "not_proposed"


def test_a_link_to_an_erased_citizen_appended_late_does_not_split_the_person_again(
    intake: FlaskClient, cph: str, connection: redis.Redis, store: EventStore, settings: Settings
) -> None:
    """A referral that read the number's link just before an erasure appends it (to the erased citizen) after the
    new citizen's claim: the next referral still finds the citizen who is not erased."""
    case = refer(intake, PARTNER, cpr="010190-1234").get_json()["case_id"]
    run_workers(connection, "caseflow")
    erased = staff_view(intake, case)["citizen_id"]
    erasure = {"requested_by": "citizen"}
    assert intake.post(f"/programmes/{cph}/citizens/{erased}/erasure", json=erasure, headers=STAFF).status_code == 201
    current = staff_view(intake, refer(intake, LIVA, cpr="010190-1234").get_json()["case_id"])["citizen_id"]
    assert current != erased
    stream = cpr_stream(cpr_fingerprint(parse_cpr("010190-1234"), settings.cpr_hmac_secret))
    store.append(stream, [NewEvent(stream, CprLinked(erased), start_of_day(date(2016, 1, 2)), "test")])
    again = staff_view(intake, refer(intake, PARTNER, cpr="010190-1234").get_json()["case_id"])["citizen_id"]
    assert again == current


def test_an_erasure_reaches_the_persons_records_confirmed_in_another_programme(
    intake: FlaskClient, cph: str, connection: redis.Redis
) -> None:
    """Matches are confirmed per programme. Maja's record with her CPR number has cases in two programmes; in each
    a coordinator confirmed it as one person with a record made without the number. Her erasure, asked of either
    programme, makes every one of those records unreadable."""
    other, other_staff = "other-programme", auth("other-coordinator")
    programme = intake.post("/programmes", json={**COPENHAGEN, "programme_id": other}, headers=other_staff)
    assert programme.status_code == 201
    no_number, with_number = {"alias": "Maja", "birth_date": "1990-01-01"}, {"alias": "Maja", "cpr": "010190-1234"}
    cases = {}
    for name, programme_id, key, citizen in (
        ("x", cph, PARTNER, no_number),
        ("y", cph, LIVA, with_number),
        ("y-other", other, PARTNER, with_number),
        ("z", other, LIVA, no_number),
    ):
        body = referral_body(programme_id=programme_id, citizen=citizen)
        response = intake.post("/referrals", json=body, headers=key)
        assert response.status_code == 201, response.get_json()
        cases[name] = response.get_json()["case_id"]
    run_workers(connection, "caseflow")
    for programme_id, staff in ((cph, STAFF), (other, other_staff)):
        [match] = intake.get(f"/programmes/{programme_id}/probable-matches", headers=staff).get_json()["matches"]
        confirm = match | {"decision": "confirm"}
        assert intake.post(f"/programmes/{programme_id}/matches", json=confirm, headers=staff).status_code == 201

    def view(case: str, staff: dict[str, str]) -> Any:
        return intake.get(f"/cases/{case}", headers=staff).get_json()

    assert view(cases["z"], other_staff)["citizen_alias"] == "Maja"
    x = view(cases["x"], STAFF)["citizen_id"]
    erased = intake.post(f"/programmes/{cph}/citizens/{x}/erasure", json={"requested_by": "citizen"}, headers=STAFF)
    assert erased.status_code == 201, erased.get_json()
    y = view(cases["y"], STAFF)["citizen_id"]
    assert erased.get_json()["records_erased"] == sorted([x, y])  # not z, nor that there is one: not this programme's
    for case, staff in ((cases["x"], STAFF), (cases["y-other"], other_staff), (cases["z"], other_staff)):
        assert view(case, staff)["citizen_alias"] == ERASED


def test_reports_are_not_caught_up_while_a_citizen_with_two_referrals_is_unsettled(
    intake: FlaskClient, reporting: FlaskClient, cph: str, connection: redis.Redis, store: EventStore
) -> None:
    """A worker that committed its batches and died before settling: the reports say they are catching up until
    a worker settles (the reviewer's finding: they said caught up while the citizen counted twice)."""
    from shared.nudges import enqueue_sweeps
    from shared.projections import ProjectionRunner
    from tests.test_projections import Unsettled

    for key in (PARTNER, LIVA):
        body = referral_body(referred_on="2016-01-05", citizen={"cpr": "010190-1234"})
        assert intake.post("/referrals", json=body, headers=key).status_code == 201
    run_workers(connection, "caseflow")
    ProjectionRunner(store, Unsettled()).catch_up_all()
    status = "/programmes/demo-cph/statistics/status?on=2016-01-06"
    before = reporting.get(status, headers=STAFF).get_json()
    assert (before["caught_up"], before["citizens"]["referred"], before["distinct_citizens"]) == (False, 2, 1)
    enqueue_sweeps(connection, "cf")  # as the scheduler does every 30 s: it settles what the dead worker left
    run_workers(connection)
    after = reporting.get(status, headers=STAFF).get_json()
    assert (after["caught_up"], after["citizens"]["referred"], after["distinct_citizens"]) == (True, 1, 1)
