"""`flask --app app hosts add|list|revoke`: runner host tokens on the command line."""

from __future__ import annotations

import time

import click
from flask import Flask
from flask.cli import AppGroup

from runnerguard.domain.timeline import format_time
from runnerguard.errors import Conflict, InvalidInput, NotFound
from runnerguard.services import hosts
from runnerguard.store import host_tokens
from runnerguard.web.state import state

hosts_cli = AppGroup("hosts", help="Runner hosts: issue, list and revoke the tokens their agents use.")
ADDED = ("Host {name} added. Put this token in RUNNERGUARD_HOST_TOKEN on the runner host (agent.env);\n"
         "it is shown only now (runnerguard keeps its SHA-256):")


@hosts_cli.command("add")
@click.argument("name")
def add_command(name: str) -> None:
    """Create a host and print its token once, alone on the last line."""
    try:
        created = hosts.add(state().redis, name, now=time.time())
    except (InvalidInput, Conflict) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(ADDED.format(name=created.name))
    click.echo(created.token)


@hosts_cli.command("list")
def list_command() -> None:
    """Hosts holding a token: name, created, last seen."""
    records = host_tokens.records(state().redis)
    if not records:
        click.echo("no hosts (add one: flask --app app hosts add NAME)")
    for record in records:
        seen = format_time(record.last_seen) if record.last_seen is not None else "never"
        click.echo(f"{record.name:<32} created {format_time(record.created_at)}  last seen {seen}")


@hosts_cli.command("revoke")
@click.argument("name")
def revoke_command(name: str) -> None:
    """Revoke a host's token: its agent is refused from now on."""
    try:
        hosts.revoke(state().redis, name)
    except (InvalidInput, NotFound) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Host {name} revoked.")


def init_app(app: Flask) -> None:
    app.cli.add_command(hosts_cli)
