"""`flask --app app rollback list|open|restore|sweep`: rollbacks from the command line."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from runnerguard.errors import NotFound, RunnerguardError
from runnerguard.services import admin
from runnerguard.store import rollback_state
from runnerguard.web.state import state

rollback_cli = AppGroup("rollback", help="See, open and restore rollbacks of self-hosted pools.")


def _check_pool(name: str) -> None:
    try:
        admin.check_pool(state().policy, name)
    except NotFound as exc:
        raise click.UsageError(str(exc)) from None


@rollback_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def list_command(as_json: bool) -> None:
    """Every pool and repository with a rollback state."""
    rows = [s.public() for s in rollback_state.list_states(state().redis)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no rollback yet: every pool is healthy")
    for row in rows:
        if row["state"] == rollback_state.BLOCKED:
            # the line a person acts on: what fired and what stops runnerguard from acting on it
            click.echo(f"{row['pool']}: {row['trigger_summary'] or 'triggered'}; rollback blocked: {row['reason']}"
                       f"  [{row['repo']}]")
            continue
        click.echo(f"{row['pool']:<16} {row['repo']:<40} {row['state']:<12} {row['pr_url'] or '-'}  "
                   f"{row['reason'] or ''}")


@rollback_cli.command("open")
@click.argument("pool")
@click.option("--repo", default=None, help="owner/name (default: every repo that ran the pool's jobs in 24h)")
@click.option("--note", default="", help="why, for the PR title")
def open_command(pool: str, repo: str | None, note: str) -> None:
    """Queue a manual rollback of POOL (a worker opens the PR)."""
    _check_pool(pool)
    web = state()
    try:
        task = admin.request_rollback(web.redis, web.policy, pool, repo, note)
    except RunnerguardError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"queued: rollback of {pool} ({repo or 'every repo of the pool'}), task {task}")


@rollback_cli.command("restore")
@click.argument("pool")
@click.option("--repo", required=True, help="owner/name")
def restore_command(pool: str, repo: str) -> None:
    """Queue the restore PR of POOL in REPO, once the pool is fixed."""
    _check_pool(pool)
    web = state()
    try:
        task = admin.request_restore(web.redis, web.policy, pool, repo)
    except RunnerguardError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"queued: restore of {pool} in {repo}, task {task}")
