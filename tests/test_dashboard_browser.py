"""The dashboard in a real headless Chromium (Playwright with the system's Chromium), against the JSON API."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator

import pytest
import redis
from werkzeug.serving import make_server

from services.intake.app import create_app as create_intake
from services.reporting.app import create_app as create_reporting
from shared.bootstrap import event_store
from shared.config import Settings
from tests import scenario
from tests.conftest import COPENHAGEN, STAFF
from tests.support import _key_parts, grant_test_keys, run_workers

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def served(real_connection: redis.Redis) -> Iterator[str]:
    settings = Settings.from_env({})
    grant_test_keys(event_store(real_connection, settings))
    intake = create_intake(real_connection, settings).test_client()
    assert intake.post("/programmes", json=COPENHAGEN, headers=STAFF).status_code == 201
    scenario.build(intake)
    run_workers(real_connection)
    server = make_server("127.0.0.1", 0, create_reporting(real_connection, settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.slow
def test_the_dashboard_shows_what_the_api_gives(served: str, real_connection: redis.Redis) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("Chromium is not installed: scripts/ensure-test-tools installs it")
    api = create_reporting(real_connection, Settings.from_env({})).test_client()
    partner, key_id, secret = _key_parts("coordinator")
    key = f"cfk.{partner}.{key_id}.{secret}"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.goto(f"{served}/programmes/demo-cph/dashboard")
        assert "/login" in page.url  # no key, no dashboard
        page.fill("input[name=api_key]", key)
        page.click("button[type=submit]")
        page.wait_for_selector("table#status")

        def shown(day: str) -> dict[str, int]:
            cells = page.locator("table#status td[data-status]")
            return {
                cells.nth(i).get_attribute("data-status") or "": int(cells.nth(i).inner_text())
                for i in range(cells.count())
            }

        def expected(day: str) -> dict[str, int]:
            body = api.get(f"/programmes/demo-cph/statistics/status?on={day}", headers=STAFF).get_json()
            counts: dict[str, int] = body["citizens"] | {"distinct_citizens": body["distinct_citizens"]}
            return counts

        def referrals_shown() -> dict[str, int]:
            cells = page.locator("table#status td[data-referrals]")
            return {
                cells.nth(i).get_attribute("data-referrals") or "": int(cells.nth(i).inner_text())
                for i in range(cells.count())
            }

        today = page.locator("input[name=on]").input_value()
        assert shown(today) == expected(today)
        page.fill("input[name=on]", "2016-01-31")
        page.click("form[method=get] button[type=submit]")
        page.wait_for_url("**on=2016-01-31")
        assert shown("2016-01-31") == expected("2016-01-31")
        assert shown("2016-01-31")["in_assessment"] == 2  # C and D, as worked out in test_reports
        referrals = api.get("/programmes/demo-cph/statistics/status?on=2016-01-31", headers=STAFF).get_json()["counts"]
        assert referrals_shown() == referrals | {"total": sum(referrals.values())}

        criteria_url = "/programmes/demo-cph/statistics/success-criteria?on=2016-01-31"  # the dashboard's date
        criteria = api.get(criteria_url, headers=STAFF).get_json()["criteria"]
        for c in criteria:
            cell = page.locator(f"td[data-criterion={c['criterion']}]").inner_text()
            assert cell == ("\u2013" if c["percentage"] is None else f"{c['percentage']} %"), c["criterion"]
        caseload = api.get("/programmes/demo-cph/statistics/caseloads?on=2016-01-31", headers=STAFF).get_json()
        assert page.locator("td[data-load=anna]").inner_text() == str(caseload["workers"][0]["load"])
        bars = page.locator("svg text[data-value]")
        intake = api.get("/programmes/demo-cph/statistics/intake", headers=STAFF).get_json()
        assert [int(bars.nth(i).text_content() or "") for i in range(bars.count())] == [
            m["referrals"] for m in intake["months"]
        ]
        page.screenshot(path="/tmp/caseflow-dashboard.png", full_page=True)

        page.goto(f"{served}/programmes/demo-cph/status-report?on=2016-07-01")
        assert page.locator("td[data-count=distinct_citizens]").inner_text() == "6"
        # F and G are one citizen: six citizens by status beside seven referrals (test_reports)
        assert page.locator("td[data-count=referred]").inner_text() == "1"
        assert page.locator("td[data-referrals=total]").inner_text() == "7"
        page.goto(f"{served}/programmes/demo-cph/dashboard")
        page.click("#sign-out")
        page.wait_for_url("**/login")
        page.goto(f"{served}/programmes/demo-cph/dashboard")
        assert "/login" in page.url  # signed out: the key is needed again
        browser.close()
