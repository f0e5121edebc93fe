"""Fuzz every intake and reporting operation from its OpenAPI document (schemathesis): zero 5xx, and every 4xx answers
with the documented error body. Bounded: CASEFLOW_FUZZ_EXAMPLES per operation (80 by default: about 3,000 requests)."""

from __future__ import annotations

import os
from typing import Any

import fakeredis
import schemathesis
from hypothesis import HealthCheck, settings

from services.intake.app import create_app
from services.intake.openapi import REQUEST_SCHEMAS, SITUATIONS
from shared.bootstrap import event_store
from shared.config import Settings
from shared.embedded import install_shims
from tests.conftest import COPENHAGEN, STAFF, referral_body
from tests.support import grant_test_keys


def _app() -> Any:
    install_shims()
    connection = fakeredis.FakeRedis()
    grant_test_keys(event_store(connection, Settings.from_env({})))
    app = create_app(connection, Settings.from_env({}))
    client = app.test_client()
    client.post("/programmes", json=COPENHAGEN, headers=STAFF)
    client.post("/referrals", json=referral_body(), headers=STAFF)
    return app


APP = _app()
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("CASEFLOW_FUZZ_EXAMPLES", "80")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_5xx_and_every_4xx_is_documented(case: Any) -> None:
    response = case.call(headers=STAFF)
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
    assert_documented_error(case, response)


def assert_documented_error(case: Any, response: Any) -> None:
    """Every 4xx is JSON with the error body (a HEAD answer has no body at all, by HTTP)."""
    if response.status_code < 400 or case.method == "HEAD":
        return
    content_type = {k.lower(): v for k, v in response.headers.items()}.get("content-type")
    detail = (case.method, case.path, case.query, response.status_code, content_type, response.text[:200])
    if (case.method, case.path, response.status_code) == ("POST", "/login", 401):  # documented: the form again
        assert "text/html" in str(content_type) and 'name="api_key"' in response.text, detail
        return
    assert "json" in str(content_type), detail
    assert {"code", "message"} <= set(response.json()["error"]), detail


def test_every_post_route_documents_its_body() -> None:
    posts = {r.endpoint for r in APP.url_map.iter_rules() if "POST" in (r.methods or ())}
    assert posts - {"courses.record_situation"} <= set(REQUEST_SCHEMAS)
    assert set(SITUATIONS) == {"contacts", "housing", "addiction-treatment", "job-centre-category"}


def test_every_post_documents_the_idempotency_key_and_dated_reads_their_date() -> None:
    """What a client may send besides the body: the Idempotency-Key header on every write, ``?on=`` on the reads
    that take one (the fuzz test then sends them too)."""
    document = APP.test_client().get("/openapi.json").get_json()
    for path, operations in document["paths"].items():
        if "post" in operations:
            assert "Idempotency-Key" in {p["name"] for p in operations["post"]["parameters"]}, path
    for path in ("/cases/{case_id}", "/programmes/{programme_id}/workers/{worker_id}/overdue-assessments"):
        assert {"name": "on", "in": "query", "required": False, "schema": {"type": "string", "format": "date"}} in (
            document["paths"][path]["get"]["parameters"]
        )


def _reporting() -> Any:
    from services.reporting.app import create_app as create_reporting
    from tests import scenario
    from tests.support import run_workers

    connection = fakeredis.FakeRedis()
    grant_test_keys(event_store(connection, Settings.from_env({})))
    intake = create_app(connection, Settings.from_env({})).test_client()
    intake.post("/programmes", json=COPENHAGEN, headers=STAFF)
    scenario.build(intake)
    run_workers(connection)
    return create_reporting(connection, Settings.from_env({}))


REPORTING = _reporting()
reporting_schema = schemathesis.openapi.from_wsgi("/openapi.json", REPORTING)


@reporting_schema.parametrize()
@settings(
    max_examples=int(os.environ.get("CASEFLOW_FUZZ_EXAMPLES", "80")) // 2,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_report_answers_5xx_and_every_4xx_is_documented(case: Any) -> None:
    response = case.call(headers=STAFF)
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
    assert_documented_error(case, response)
    if response.status_code == 200 and case.method == "GET":  # the content type the document gives
        documented = case.operation.definition.raw["responses"]["200"]["content"]
        [header] = [v for k, v in response.headers.items() if k.lower() == "content-type"]
        content_type = (header[0] if isinstance(header, list) else header).split(";")[0]
        assert content_type in documented, (case.path, content_type, list(documented))


def test_every_report_answers_in_the_content_type_it_documents() -> None:
    """The fuzzer rarely reaches a 200 (its programme ids are random): each documented read, for the programme
    the app holds, with a key that may read it, answers 200 in a content type its document names."""
    from tests.support import auth

    client = REPORTING.test_client()
    paths = client.get("/openapi.json").get_json()["paths"]
    answered = {}
    for path, item in paths.items():
        if "get" not in item or path == "/metrics":
            continue
        url = path.replace("{programme_id}", "demo-cph")
        response = next(
            (r for key in (STAFF, auth("evaluator")) if (r := client.get(url, headers=key)).status_code == 200),
            client.get(url, headers=STAFF),
        )
        assert response.status_code == 200, (path, response.status_code)
        assert response.mimetype in item["get"]["responses"]["200"]["content"], (path, response.mimetype)
        answered[path] = response.mimetype
    assert {"text/csv", "text/html", "application/json"} <= set(answered.values()), answered
