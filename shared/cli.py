"""``flask --app services.<intake|reporting>.app projections ...``: rebuild read models, show their lag."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from services.caseflow.projection import CaseflowProjection
from services.reporting.projection import ReportingProjection
from shared.bootstrap import event_store
from shared.config import Settings
from shared.eventstore import EventStore
from shared.projections import Projection, ProjectionRunner, rebuild

projections = AppGroup("projections", help="Read models: rebuild from the log, show checkpoints and lag.")
ALL: dict[str, Projection] = {"caseflow": CaseflowProjection(), "reporting": ReportingProjection()}


def _store() -> tuple[EventStore, str]:
    settings = Settings.from_env()
    return event_store(current_app.extensions["redis"], settings), settings.key_prefix


@projections.command("rebuild")
@click.argument("name", type=click.Choice([*ALL, "all"]), default="all")
def rebuild_command(name: str) -> None:
    """Rebuild into new keys from the log, then switch readers and workers over at once."""
    store, prefix = _store()
    for projection in ALL.values() if name == "all" else [ALL[name]]:
        with click.progressbar(length=store.head(), label=f"rebuilding {projection.name}") as bar:
            namespace = rebuild(store, projection, prefix, progress=bar.update)
        click.echo(f"{projection.name}: now reading {namespace}")


@projections.command("status")
def status_command() -> None:
    """Each read model's generation, and which partitions have events it has not applied yet."""
    store, prefix = _store()
    for projection in ALL.values():
        runner = ProjectionRunner(store, projection, prefix=prefix)
        lagging = [p for p in range(store.partitions) if store.partition_head(p) > runner.checkpoint(p)]
        state = "caught up" if not lagging else f"behind in partitions {lagging}"
        click.echo(f"{projection.name}\t{runner.namespace}\tlog head {store.head()}\t{state}")
