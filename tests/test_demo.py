"""The synthetic demo generator: seeded, through the real intake API, and every report has something to show."""

from __future__ import annotations

from typing import Any
from urllib.error import HTTPError

import fakeredis
import redis

from services.intake.app import create_app as create_intake
from services.reporting.app import create_app as create_reporting
from shared.bootstrap import event_store
from shared.config import Settings
from shared.demo import PROGRAMMES, generate
from shared.embedded import install_shims
from shared.suite import DEMO_KEYS
from tests.support import run_workers

STATISTICS = [
    "statistics/status?on=2017-01-01",
    "statistics/intake",
    "referrals-per-partner",
    "statistics/courses",
    "statistics/measures",
    "statistics/success-criteria",
    "statistics/fidelity?on=2017-01-01",
    "statistics/caseloads?on=2016-06-01",
    "status-report?format=json",
]


def demo(connection: redis.Redis, citizens: int, seed: int) -> dict[str, Any]:
    """Provision the demo's partners and keys as the suite does, generate, project, and read every report."""
    from services.intake.admin import issue_key, load_partner, register_partner
    from services.intake.service import Context

    settings = Settings.from_env({})
    app = create_intake(connection, settings)
    intake, ctx = app.extensions["intake"], Context("test", "test")
    keys = {}
    for variable, partner, name, kind, role, programme, worker in DEMO_KEYS:
        if load_partner(intake, partner) is None:
            register_partner(intake, ctx, partner, name, kind)
        keys[variable] = issue_key(intake, ctx, partner, role, programme, worker, variable)
    client = app.test_client()
    refused: list[int] = []

    def call(method: str, url: str, body: dict[str, Any] | None = None, key: str | None = None) -> Any:
        response = client.open(
            url.removeprefix("http://intake"), method=method, json=body, headers={"Authorization": f"Bearer {key}"}
        )
        if response.status_code >= 400:
            refused.append(response.status_code)
            raise HTTPError(url, response.status_code, "refused", {}, None)  # type: ignore[arg-type]
        return response.get_json()

    made = generate(call, "http://intake", keys, citizens, seed)
    assert set(refused) <= {409}, refused
    run_workers(connection)
    reporting = create_reporting(connection, settings).test_client()
    answers: dict[str, Any] = {}
    coordinators = {spec["programme_id"]: keys[spec["key"]] for spec in PROGRAMMES}
    for programme in made:
        for path in STATISTICS:
            headers = {"Authorization": f"Bearer {coordinators[programme]}"}
            response = reporting.get(f"/programmes/{programme}/{path}", headers=headers)
            assert response.status_code == 200, (programme, path, response.get_json())
            answers[f"{programme}/{path}"] = {k: v for k, v in response.get_json().items() if k != "caught_up"}
    answers["made"] = made
    answers["head"] = event_store(connection, settings).head()
    return answers


def test_the_generator_fills_every_report_and_is_seeded(connection: redis.Redis) -> None:
    first = demo(connection, citizens=12, seed=5)
    assert first["made"] == {"cph-2016": 6, "ballerup-2012": 6}
    for spec in PROGRAMMES:
        programme = spec["programme_id"]
        assert first[f"{programme}/statistics/status?on=2017-01-01"]["distinct_citizens"] == 6
        assert first[f"{programme}/statistics/intake"]["total"] == 6
    enrolled = sum(m["enrolled"] for p in first["made"] for m in first[f"{p}/statistics/courses"]["by_method"])
    assert enrolled > 0 and first["head"] > 100  # stars, WHO-5, contacts, housing... not just referrals

    install_shims()
    again = demo(fakeredis.FakeRedis(), citizens=12, seed=5)  # another store, the same seed
    assert {k: v for k, v in again.items() if "fidelity" not in k} == {
        k: v for k, v in first.items() if "fidelity" not in k
    }


def test_the_demo_survives_export_flush_import_rebuild(connection: redis.Redis, tmp_path: Any) -> None:
    before = demo(connection, citizens=6, seed=11)
    runner = create_intake(connection, Settings.from_env({})).test_cli_runner()

    def cli(*args: str) -> str:
        result = runner.invoke(args=list(args))
        assert result.exit_code == 0, result.output
        return str(result.output)

    cli("log", "export", str(tmp_path / "log.gz"))
    connection.flushdb()
    cli("log", "import", str(tmp_path / "log.gz"))
    cli("projections", "rebuild", "all")
    assert "lag 0" in cli("projections", "status", "--partitions")
    reporting = create_reporting(connection, Settings.from_env({})).test_client()
    after = {}
    from services.intake.admin import issue_key
    from services.intake.service import Context

    intake = create_intake(connection, Settings.from_env({})).extensions["intake"]
    for spec in PROGRAMMES:
        coordinator = issue_key(
            intake,
            Context("test", "test"),
            "kk-socialforvaltning" if spec["programme_id"] == "cph-2016" else "ballerup-kommune",
            "coordinator",
            spec["programme_id"],
            None,
            "t",
        )
        for path in STATISTICS:
            response = reporting.get(
                f"/programmes/{spec['programme_id']}/{path}", headers={"Authorization": f"Bearer {coordinator}"}
            )
            after[f"{spec['programme_id']}/{path}"] = {k: v for k, v in response.get_json().items() if k != "caught_up"}
    assert after == {k: v for k, v in before.items() if k in after}  # fidelity too: the same cases, restored
    assert len(after) == len(PROGRAMMES) * len(STATISTICS)
