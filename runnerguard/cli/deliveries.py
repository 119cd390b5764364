"""`flask --app app deliveries list|show|replay ...`: the admin API's twin on the command line."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click
from flask import Flask
from flask.cli import AppGroup

from runnerguard.cli.rollback import rollback_cli
from runnerguard.cli.send_test import send_test_command
from runnerguard.domain.timeline import format_time
from runnerguard.errors import NotFound
from runnerguard.queue import tasks
from runnerguard.services import dictionary, replay
from runnerguard.store import deliveries
from runnerguard.store.body_codec import BodyError
from runnerguard.store.delivery_query import DeliveryFilter, QueryError, page, scan
from runnerguard.web.state import state

NOT_CONFIGURED = "the GitHub App is not configured (GITHUB_APP_ID and GITHUB_PRIVATE_KEY_PATH)"
F = TypeVar("F", bound=Callable[..., Any])
deliveries_cli = AppGroup("deliveries", help="List, show and replay recorded webhook deliveries.")


def filter_options(command: F) -> F:
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
        except NotFound:
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
@click.option("--wait", default=300, show_default=True, type=click.IntRange(1, 3600),
              help="seconds to wait for a worker to finish it")
def recover_command(since: str | None, wait: int) -> None:
    """Ask GitHub to redeliver every delivery runnerguard never recorded (a worker does it; this waits)."""
    web = state()
    when = _filter(since=since).since if since else None
    if not web.settings.github_app_id:
        raise click.ClickException(NOT_CONFIGURED)
    job = tasks.enqueue(tasks.RECOVER, when, connection=web.redis)  # type: ignore[arg-type]
    click.echo(f"queued recovery (task {job.id}); waiting for a worker ...")
    status, result = tasks.wait_for(job.id, connection=web.redis, timeout=wait)
    if status != "finished":
        if result is None:
            raise click.ClickException(f"no worker finished it within {wait} s (is `make run` or a worker running?); "
                                       "it stays queued")
        raise click.ClickException(f"recovery failed: {result}")
    report = result or {}
    click.echo(f"scanned {report.get('scanned')} GitHub deliveries: {report.get('missing')} never recorded, "
               f"{report.get('requested')} redelivery requests, {report.get('failed')} failed, "
               f"{report.get('skipped_recently_asked')} asked for within the last 30 minutes")
    if report.get("failed"):
        raise SystemExit(1)


def init_app(app: Flask) -> None:
    deliveries_cli.add_command(send_test_command)
    app.cli.add_command(deliveries_cli)
    app.cli.add_command(rollback_cli)


@deliveries_cli.command("train-dictionary")
@click.option("--samples", default=3000, show_default=True, type=click.IntRange(20, dictionary.MAX_SAMPLES),
              help="newest workflow_job deliveries to train on")
@click.option("--size", default=16384, show_default=True, type=click.IntRange(1024, 1 << 20),
              help="dictionary size in bytes")
@click.option("--activate/--no-activate", default=True, show_default=True,
              help="compress new deliveries with it (web processes pick it up when restarted)")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="also write the dictionary to this file (to ship it in runnerguard/store/zdicts)")
def train_dictionary_command(samples: int, size: int, activate: bool, out: str | None) -> None:
    """Train a zstd dictionary for delivery bodies from the live log (old deliveries stay readable)."""
    try:
        trained, data = dictionary.train_from_log(state().redis, samples=samples, size=size, activate=activate)
    except BodyError as exc:
        raise click.ClickException(str(exc)) from None
    if out:
        with open(out, "wb") as handle:
            handle.write(data)
    click.echo(f"dictionary {trained.dict_id}: {trained.size} bytes from {trained.samples} deliveries; "
               f"bodies {trained.average_before:,.0f} -> {trained.average_after:,.0f} bytes on average"
               + ("; active for new deliveries once the web processes restart" if trained.activated else ""))
