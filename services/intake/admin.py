"""Partners and API keys, managed from the command line and stored as events.

    flask --app services.intake.app admin partner-add reden --name "Reden" --kind ngo
    flask --app services.intake.app admin key-issue reden --role referrer --label "Reden intake desk"
    caseflow-admin key-issue kk --role coordinator --programme demo-cph     # the same, as a console script

A key is printed once and only its hash is stored; it cannot be shown again.
"""

from __future__ import annotations

import getpass

import click
from flask import Blueprint, Response, current_app, jsonify
from flask.cli import AppGroup, FlaskGroup

from services.intake.service import Context, Intake, Write
from shared.authn import caller
from shared.domain.access import Partner, Role, evolve_partner, new_api_key, partner_stream
from shared.domain.events import SELF_REFERRAL, ApiKeyIssued, ApiKeyRevoked, PartnerRegistered
from shared.events.envelope import today
from shared.eventstore import WrongExpectedVersion
from shared.redis_values import as_text

admin = AppGroup("admin", help="Partners and API keys (stored as events; a key is shown once).")
bp = Blueprint("admin", __name__)


def _intake() -> Intake:
    service: Intake = current_app.extensions["intake"]
    return service


def _ctx() -> Context:
    return Context(actor=f"admin-cli:{getpass.getuser()}", request_id="cli")


def load_partner(intake: Intake, partner_id: str) -> Partner | None:
    partner: Partner | None = None
    for event in intake.store.read_stream(partner_stream(partner_id)):
        partner = evolve_partner(partner, partner_id, event.payload)
    return partner


def register_partner(intake: Intake, ctx: Context, partner_id: str, name: str, kind: str) -> None:
    if partner_id == SELF_REFERRAL:
        # A partner under that id would be the referrer of every citizen's own contact, and see them all.
        raise click.ClickException(f"'{SELF_REFERRAL}' is the source of citizens' own contacts, not a partner's id")
    intake.write(ctx, today(), [Write(partner_stream(partner_id), [PartnerRegistered(name, kind)], 0)])


def issue_key(
    intake: Intake,
    ctx: Context,
    partner_id: str,
    role: str,
    programme_id: str | None,
    worker_id: str | None,
    label: str,
) -> str:
    """Issue a key and return it: the only time it exists outside the caller's hands."""
    partner = load_partner(intake, partner_id)
    if partner is None:
        raise click.ClickException(f"no partner {partner_id}: add it with partner-add")
    key, key_id, secret_hash = new_api_key(partner_id)
    issued = ApiKeyIssued(key_id, secret_hash, role, programme_id, worker_id if role == "worker" else None, label)
    intake.write(ctx, today(), [Write(partner_stream(partner_id), [issued], partner.version)])
    return key


def _existing(partner_id: str) -> Partner:
    partner = load_partner(_intake(), partner_id)
    if partner is None:
        raise click.ClickException(f"no partner {partner_id}: add it with partner-add")
    return partner


@admin.command("partner-add")
@click.argument("partner_id")
@click.option("--name", required=True, help="The organisation's name.")
@click.option("--kind", type=click.Choice(["municipality", "ngo", "other"]), default="ngo", show_default=True)
def partner_add(partner_id: str, name: str, kind: str) -> None:
    """Register a partner organisation."""
    try:
        register_partner(_intake(), _ctx(), partner_id, name, kind)
    except WrongExpectedVersion:
        raise click.ClickException(f"partner {partner_id} exists already") from None
    click.echo(f"partner {partner_id} registered")


@admin.command("key-issue")
@click.argument("partner_id")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option(
    "--programme",
    "programme_id",
    help="The programme a coordinator or worker works in; for a referrer or evaluator, the only one it reaches.",
)
@click.option("--worker", "worker_id", help="For a worker key: which relation worker.")
@click.option("--label", default="", help="Who or what uses the key, e.g. a person's initials.")
def key_issue(partner_id: str, role: str, programme_id: str | None, worker_id: str | None, label: str) -> None:
    """Issue an API key and print it, once."""
    if role in ("coordinator", "worker") and not programme_id:
        raise click.UsageError(f"a {role} key needs --programme")
    if role == "worker" and not worker_id:
        raise click.UsageError("a worker key needs --worker")
    key = issue_key(_intake(), _ctx(), partner_id, role, programme_id, worker_id, label)
    click.echo(key)
    click.echo(f"key {key.split('.')[2]} ({role}) issued: store it now, it is not shown again", err=True)


@admin.command("key-revoke")
@click.argument("partner_id")
@click.argument("key_id")
def key_revoke(partner_id: str, key_id: str) -> None:
    """Revoke a key: it stops working on the next request."""
    partner = _existing(partner_id)
    if key_id not in partner.keys:
        raise click.ClickException(f"{partner_id} has no key {key_id}")
    _intake().write(_ctx(), today(), [Write(partner_stream(partner_id), [ApiKeyRevoked(key_id)], partner.version)])
    click.echo(f"key {key_id} revoked")


def all_partners(intake: Intake) -> list[Partner]:
    pattern = intake.store.keys.stream(partner_stream("*"))
    ids = sorted(as_text(raw).rsplit(":stream:partner-", 1)[1] for raw in intake.store.redis.scan_iter(match=pattern))
    return [p for p in (load_partner(intake, partner_id) for partner_id in ids) if p is not None]


@admin.command("partners")
def partners() -> None:
    """List partners and their keys (never the keys themselves)."""
    for partner in all_partners(_intake()):
        click.echo(f"{partner.partner_id}\t{partner.kind}\t{partner.name}")
        for key in partner.keys.values():
            state = "revoked" if key.revoked else "active"
            scope = " ".join(filter(None, [key.programme_id, key.worker_id]))
            click.echo(f"  {key.key_id}\t{key.role.value}\t{state}\t{scope}\t{key.label}")


@bp.get("/admin/partners")
def list_partners() -> Response:
    """For the admin role: partners and their key ids, roles and scopes (never a key, never case content)."""
    caller(Role.ADMIN)
    return jsonify(
        partners=[
            {
                "partner_id": p.partner_id,
                "name": p.name,
                "kind": p.kind,
                "keys": [
                    {
                        "key_id": k.key_id,
                        "role": k.role.value,
                        "programme_id": k.programme_id,
                        "worker_id": k.worker_id,
                        "label": k.label,
                        "revoked": k.revoked,
                    }
                    for k in p.keys.values()
                ],
            }
            for p in all_partners(_intake())
        ]
    )


def main() -> None:
    """``caseflow-admin``: the admin commands without ``flask --app``."""
    from services.intake.app import create_app

    cli = FlaskGroup(create_app=create_app, add_default_commands=False)
    for command in admin.commands.values():
        cli.add_command(command)
    cli()
