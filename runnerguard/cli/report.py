"""`flask --app app report` (the scorecard as a table) and `flask --app app export` (raw job timings)."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from itertools import islice
from typing import Any

import click
import redis
from flask import Flask
from flask.cli import with_appcontext

from runnerguard.domain import timeparse
from runnerguard.domain.scorecard import NO_DATA, PASS
from runnerguard.services import reports as report_data
from runnerguard.store import jobstore
from runnerguard.web.state import state

EXPORT_FIELDS = ("repo", "job_id", "run_id", "run_attempt", "workflow", "name", "pools", "runner_name", "conclusion",
                 "created_at", "started_at", "completed_at", "queue_seconds", "run_seconds")
EXPORT_BATCH = 500
BAD_SINCE = "--since must be a duration such as 7d, 24h or 90m, or an ISO 8601 time with a zone, got {raw!r}"
REPORT_TITLE = "How each pool did against its targets (last 7 days; time spent rolled back: last 30 days)"
SUMMARY = "{passed} of {total} targets met, {missing} without data"


def parse_since(raw: str, *, now: float) -> float:
    try:
        when = timeparse.parse_when(raw, "--since", now=now, allow_zero=False)
    except timeparse.TimeError:
        raise click.BadParameter(BAD_SINCE.format(raw=raw[:40]), param_hint="--since") from None
    if when is None:
        raise click.BadParameter(BAD_SINCE.format(raw=raw), param_hint="--since")
    return when


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, ["-" * w for w in widths], *rows]]
    return "\n".join(lines)


@click.command("report", help="Show how each pool did against its targets: target, actual, pass/fail.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@with_appcontext
def report_command(fmt: str) -> None:
    web = state()
    rows = report_data.scorecard_rows(web.redis, web.policy, now=time.time())
    if fmt == "json":
        click.echo(json.dumps([r.public() for r in rows], indent=2))
        return
    click.echo(REPORT_TITLE)
    click.echo(table([[r.pool, r.title, r.target, r.actual_text, r.status.upper() if r.status != NO_DATA else r.status]
                      for r in rows], ["pool", "measure", "target", "actual", "result"]))
    passed = sum(1 for r in rows if r.status == PASS)
    missing = sum(1 for r in rows if r.status == NO_DATA)
    click.echo(SUMMARY.format(passed=passed, total=len(rows), missing=missing))


def iter_jobs(client: redis.Redis, since: float) -> Iterator[dict[str, Any]]:
    """Every job created since `since`, oldest first, a batch at a time (memory stays flat for 30 days)."""
    members = jobstore.created_since(client, since)
    while batch := list(islice(members, EXPORT_BATCH)):
        yield from jobstore.load(client, batch)


def _export_row(record: dict[str, Any]) -> dict[str, Any]:
    row = {name: record.get(name) for name in EXPORT_FIELDS}
    row["pools"] = " ".join(row["pools"] or ())
    return row


@click.command("export", help="Export raw job timings (one row per job) as CSV or JSON to standard output.")
@click.option("--since", "since_raw", default="7d", show_default=True, help="7d, 24h, 90m or ISO 8601 with a zone")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@with_appcontext
def export_command(since_raw: str, fmt: str) -> None:
    since = parse_since(since_raw, now=time.time())
    jobs = (_export_row(r) for r in iter_jobs(state().redis, since))
    if fmt == "json":
        click.echo("[", nl=False)
        for n, row in enumerate(jobs):
            click.echo(("," if n else "") + "\n" + json.dumps(row), nl=False)
        click.echo("\n]")
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    click.echo(buffer.getvalue(), nl=False)
    for row in jobs:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(row)
        click.echo(buffer.getvalue(), nl=False)


def init_app(app: Flask) -> None:
    app.cli.add_command(report_command)
    app.cli.add_command(export_command)
