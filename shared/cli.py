"""``flask --app services.<intake|reporting>.app projections ...``: rebuild read models, show their lag."""

from __future__ import annotations

import os
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from services.caseflow.projection import CaseflowProjection
from services.reporting.projection import ReportingProjection
from shared.backup import BackupError, export_log, import_log, verify_log
from shared.bootstrap import event_store
from shared.config import Settings
from shared.eventstore import EventStore
from shared.gc_tuning import make_full_collections_rare
from shared.nudges import queue_health, requeue_failed
from shared.projections import (
    Projection,
    ProjectionRunner,
    RebuildFailed,
    RebuildOverlapped,
    can_fork_readers,
    damage,
    rebuild,
)
from shared.vault import Vault, export_keys, import_keys

projections = AppGroup("projections", help="Read models: rebuild from the log, show checkpoints and lag.")
ALL: dict[str, Projection] = {"caseflow": CaseflowProjection(), "reporting": ReportingProjection()}


def _store() -> tuple[EventStore, str]:
    settings = Settings.from_env()
    return event_store(current_app.extensions["redis"], settings), settings.key_prefix


@projections.command("rebuild")
@click.argument("name", type=click.Choice([*ALL, "all"]), default="all")
@click.option(
    "--processes",
    type=int,
    default=0,
    help="Processes sharing the partitions (default: one per core, on a Redis server; 1 on the embedded store).",
)
def rebuild_command(name: str, processes: int) -> None:
    """Rebuild into new keys from the log (every read model in one pass), then switch readers and workers."""
    make_full_collections_rare()  # before the rebuild's processes fork: each holds the documents it folds
    store, prefix = _store()
    chosen = list(ALL.values()) if name == "all" else [ALL[name]]
    if processes <= 0:
        processes = min(os.cpu_count() or 1, store.partitions) if can_fork_readers(store.redis) else 1
    label = f"rebuilding {', '.join(p.name for p in chosen)} ({processes} process{'es' if processes > 1 else ''})"
    try:
        with click.progressbar(length=store.head(), label=label) as bar:
            namespaces = rebuild(store, chosen, prefix, progress=bar.update, processes=processes)
    except RebuildOverlapped as overlapped:
        raise click.ClickException(str(overlapped)) from None
    except RebuildFailed as failed:
        raise click.ClickException(
            f"the rebuild failed and switched nothing (what it had built is deleted): {failed}"
        ) from None
    for projection_name, namespace in namespaces.items():
        click.echo(f"{projection_name}: now reading {namespace}")


@projections.command("status")
@click.option("--partitions", is_flag=True, help="Also each partition's checkpoint and newest event.")
def status_command(partitions: bool) -> None:
    """Each read model's generation, which partitions have events it has not applied yet, and any damage."""
    store, prefix = _store()
    for projection in ALL.values():
        runner = ProjectionRunner(store, projection, prefix=prefix)
        lagging = [p for p in range(store.partitions) if store.partition_head(p) > runner.checkpoint(p)]
        state = "caught up" if not lagging else f"behind in partitions {lagging}"
        if marked := damage(store.redis, runner.namespace):
            state += f"; DAMAGED in partitions {list(marked)}, rebuild it (projections rebuild {projection.name})"
        click.echo(f"{projection.name}\t{runner.namespace}\tlog head {store.head()}\t{state}")
        for p in range(store.partitions) if partitions else []:
            head, checkpoint = store.partition_head(p), runner.checkpoint(p)
            click.echo(f"  partition {p}\tcheckpoint {checkpoint}\tnewest event {head}\tlag {head - checkpoint}")


log_commands = AppGroup("log", help="The event log: export to a file, import into an empty store, verify.")


@log_commands.command("show")
@click.option("--from", "after", type=int, default=0, help="Show events after this global position.")
@click.option("--limit", type=int, default=20, show_default=True)
def show_command(after: int, limit: int) -> None:
    """Print envelopes from a position on (personal fields stay sealed), to trace what happened when."""
    store, _ = _store()
    for event in store.read_all(after=after, limit=limit):
        click.echo(
            f"{event.global_position}\t{event.occurred_on}\t{event.stream_id}#{event.stream_position}\t"
            f"{event.event_type} v{event.schema_version}\t{event.actor}"
        )


@log_commands.command("export")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def export_command(path: Path) -> None:
    """Write the log to PATH (gzip JSONL) and its SHA-256 to PATH.sha256."""
    store, _ = _store()
    with click.progressbar(length=store.head(), label="exporting") as bar:
        count, digest = export_log(store, path, progress=bar.update)
    click.echo(f"{count} events -> {path} (sha256 {digest})")


@log_commands.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_command(path: Path) -> None:
    """Restore PATH into an empty store (checksum checked first), or finish an interrupted import of PATH; then
    rebuild the read models."""
    store, _ = _store()
    try:
        with click.progressbar(length=0, label="importing") as bar:
            count = import_log(store, path, progress=bar.update)
    except BackupError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{count} events restored; now run: projections rebuild all")


@log_commands.command("verify")
def verify_command() -> None:
    """Check positions are contiguous, every event passes its schema, and the indexes agree with the log."""
    store, _ = _store()
    with click.progressbar(length=store.head(), label="verifying") as bar:
        result = verify_log(store, progress=bar.update)
    for problem in result.problems:
        click.echo(f"PROBLEM: {problem}", err=True)
    click.echo(f"{result.events} events, {len(result.problems)} problem(s)")
    if result.problems:
        raise SystemExit(1)


vault_commands = AppGroup("vault", help="Citizens' keys (wrapped by the master key): back them up apart from the log.")


@vault_commands.command("export")
@click.argument("path", type=click.Path(dir_okay=False))
def vault_export_command(path: str) -> None:
    """Write every citizen's wrapped key to PATH. Keep it with short retention, apart from the log's backups."""
    count = export_keys(_vault(), path)
    click.echo(f"{count} citizen keys -> {path}")


@vault_commands.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def vault_import_command(path: str) -> None:
    """Restore wrapped keys from PATH, skipping citizens the log records as erased (import the log first)."""
    store, _ = _store()
    restored, skipped = import_keys(
        _vault(), path, lambda c: store.stream_version(f"citizen-{c.removeprefix('citizen-')}") > 0
    )
    click.echo(f"{restored} citizen keys restored, {skipped} skipped (erased)")


def _vault() -> Vault:
    settings = Settings.from_env()
    return Vault(current_app.extensions["redis"], settings.key_prefix, settings.master_key)


jobs_commands = AppGroup("jobs", help="Jobs that failed after their retries: list them, run them again.")


@jobs_commands.command("status")
def jobs_status_command() -> None:
    """Queued and failed jobs per queue."""
    prefix = Settings.from_env().key_prefix
    for queue, counts in queue_health(current_app.extensions["redis"], prefix).items():
        click.echo(f"{queue}\tqueued {counts['queued']}\tfailed {counts['failed']}")


@jobs_commands.command("requeue")
def jobs_requeue_command() -> None:
    """Put every failed job back in its queue (after fixing what made it fail)."""
    requeued = requeue_failed(current_app.extensions["redis"], Settings.from_env().key_prefix)
    click.echo(f"{requeued} failed job(s) requeued")
