"""`flask --app app rollback list|open|restore|sweep`: rollbacks from the command line."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup
from rq import Queue

from runnerguard.domain.pools import DEFAULT_POOL
from runnerguard.queue.dispatch import GITHUB_QUEUE
from runnerguard.store import rollback_state
from runnerguard.web.state import state

rollback_cli = AppGroup("rollback", help="See, open and restore rollbacks of self-hosted pools.")


def _check_pool(name: str) -> None:
    names = [p.name for p in (state().policy.pools or (DEFAULT_POOL,))]
    if name not in names:
        raise click.UsageError(f"no pool {name!r} (pools: {', '.join(names)})")


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
        click.echo(f"{row['pool']:<16} {row['repo']:<40} {row['state']:<12} {row['pr_url'] or '-'}  "
                   f"{row['reason'] or ''}")


@rollback_cli.command("open")
@click.argument("pool")
@click.option("--repo", default=None, help="owner/name (default: every repo that ran the pool's jobs in 24h)")
@click.option("--note", default="", help="why, for the PR title")
def open_command(pool: str, repo: str | None, note: str) -> None:
    """Queue a manual rollback of POOL (a worker opens the PR)."""
    _check_pool(pool)
    job = Queue(GITHUB_QUEUE, connection=state().redis).enqueue(
        "handlers.rollback.manual_rollback_task", pool, repo, note, result_ttl=3600)
    click.echo(f"queued: rollback of {pool} ({repo or 'every repo of the pool'}), task {job.id}")


@rollback_cli.command("restore")
@click.argument("pool")
@click.option("--repo", required=True, help="owner/name")
def restore_command(pool: str, repo: str) -> None:
    """Queue the restore PR of POOL in REPO, once the pool is fixed."""
    _check_pool(pool)
    current = rollback_state.load(state().redis, pool, repo)
    if current.state not in (rollback_state.ROLLED_BACK, rollback_state.PR_OPEN):
        raise click.ClickException(f"{pool} in {repo} is {current.state}: nothing to restore")
    job = Queue(GITHUB_QUEUE, connection=state().redis).enqueue(
        "handlers.rollback.restore_rollback", pool, repo, result_ttl=3600)
    click.echo(f"queued: restore of {pool} in {repo}, task {job.id}")
