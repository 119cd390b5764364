"""`flask --app app deliveries list|show|replay ...`: the admin API's twin on the command line."""

from __future__ import annotations

import json

import click
from flask import Flask
from flask.cli import AppGroup

from handlers import replay
from handlers.web.state import state
from runnerguard import deliveries
from runnerguard.delivery_query import DeliveryFilter, QueryError, page, scan
from runnerguard.timeline import format_time

deliveries_cli = AppGroup("deliveries", help="List, show and replay recorded webhook deliveries.")


def filter_options(command: click.Command) -> click.Command:
    for name, text in (("until", "received before (ISO 8601 or 72h)"), ("since", "received after (ISO 8601 or 72h)"),
                       ("state", "queued|running|done|failed|ignored"), ("repo", "owner/name"),
                       ("action", "e.g. completed"), ("event", "e.g. workflow_job")):
        command = click.option(f"--{name}", default=None, help=text)(command)
    return command


def _filter(**options: str | None) -> DeliveryFilter:
    try:
        return DeliveryFilter.from_mapping({k: v for k, v in options.items() if v is not None})
    except QueryError as exc:
        raise click.UsageError(str(exc)) from None


@deliveries_cli.command("list")
@filter_options
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 5000))
def list_command(limit: int, **options: str | None) -> None:
    """List deliveries, oldest first."""
    items, cursor = page(state().redis, _filter(**options), cursor=None, limit=limit)
    for d in items:
        click.echo(f"{format_time(d.received_at)}  {d.guid:<38} {d.event:<14} {d.action or '-':<12} "
                   f"{d.state:<8} {d.repo or '-'}")
    if cursor:
        click.echo("(more: narrow with --since, or raise --limit)")


@deliveries_cli.command("show")
@click.argument("guid")
def show_command(guid: str) -> None:
    """Show one delivery: headers, state, attempts (not the payload; --payload for it)."""
    web = state()
    delivery = deliveries.load(web.redis, guid)
    if delivery is None:
        raise click.ClickException(f"no delivery {guid}")
    click.echo(json.dumps({**delivery.summary(), "attempts": deliveries.attempts(web.redis, guid)}, indent=2))


@deliveries_cli.command("replay")
@click.argument("guid", required=False)
@click.option("--all", "everything", is_flag=True, help="replay every delivery matching the filters")
@filter_options
def replay_command(guid: str | None, everything: bool, **options: str | None) -> None:
    """Replay one delivery by GUID, or every delivery matching the filters (with --all)."""
    web = state()
    if guid:
        try:
            queued = replay.replay_one(web.redis, web.intake.dispatcher, guid)
        except replay.NotFound:
            raise click.ClickException(f"no delivery {guid}") from None
        click.echo(f"replaying {guid}: {', '.join(queued) or 'no task'}")
        return
    query = _filter(**options)
    if not everything and query == DeliveryFilter():
        raise click.UsageError("give a GUID, or filters, or --all")
    total = sum(1 for _ in scan(web.redis, query))
    with click.progressbar(length=total, label="replaying") as bar:
        seen = {"n": 0}

        def progress(_total: int, done: int, errors: int) -> bool:
            bar.update(done + errors - seen["n"])
            seen["n"] = done + errors
            return True

        done, errors = replay.replay_matching(web.redis, web.intake.dispatcher, query, progress=progress)
    click.echo(f"queued {done} deliveries again ({errors} had expired)")


@deliveries_cli.command("recover")
@click.option("--since", default=None, help="look back this far (72h, or ISO 8601) instead of from the checkpoint")
def recover_command(since: str | None) -> None:
    """Ask GitHub to redeliver every delivery runnerguard never recorded."""
    from handlers import runtime
    from runnerguard.github import GitHubKeyError
    from runnerguard.recovery import recover

    web = state()
    when = _filter(since=since).since if since else None
    rt = runtime.Runtime(settings=web.settings, policy=web.policy, redis=web.redis)
    try:
        github = rt.github()
    except GitHubKeyError as exc:
        raise click.ClickException(str(exc)) from None
    if github is None:
        raise click.ClickException("the GitHub App is not configured (GITHUB_APP_ID and GITHUB_PRIVATE_KEY_PATH)")
    with click.progressbar(length=0, label="asking GitHub to redeliver", show_pos=True) as bar:
        report = recover(web.redis, github, since=when, progress=lambda r: bar.update(1))
    click.echo(f"scanned {report.scanned} GitHub deliveries: {report.missing} never recorded, "
               f"{len(report.requested)} redelivery requests, {len(report.failed)} failed, "
               f"{report.skipped_recently_asked} asked for within the last 30 minutes")
    if report.failed:
        raise SystemExit(1)


def init_app(app: Flask) -> None:
    from handlers.cli_rollback import rollback_cli
    from handlers.cli_send_test import send_test_command

    deliveries_cli.add_command(send_test_command)
    app.cli.add_command(deliveries_cli)
    app.cli.add_command(rollback_cli)
