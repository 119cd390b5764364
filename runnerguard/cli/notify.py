"""`flask --app app notify test [NAME]`: send a test message to each notifier and say what each answered."""

from __future__ import annotations

import time

import click
from flask import Flask
from flask.cli import AppGroup

from config import ConfigError
from config.notify_env import NotifyTarget, load_targets
from config.notify_policy import GITHUB_ISSUE
from runnerguard.domain import notify_bodies
from runnerguard.queue import tasks
from runnerguard.services import notify_http
from runnerguard.web.state import state

notify_cli = AppGroup("notify", help="Check the notifiers of the policy ([[notify]]).")
NO_NOTIFIER = ("nothing to test: the policy declares no notifier ([[notify]] in RUNNERGUARD_POLICY; "
               "README: Notifications)")
NO_WORKER = ("no worker answered within {wait} s (a github-issue test runs on a worker: is `make run` or a worker "
             "of the github queue running?); the test stays queued")


def _targets(name: str | None) -> list[NotifyTarget]:
    specs = state().policy.notifiers
    if not specs and name is None:
        return []  # not a failure: nothing is configured to fail
    if name is not None:
        specs = tuple(s for s in specs if s.name == name)
        if not specs:
            known = ", ".join(s.name for s in state().policy.notifiers) or "none"
            raise click.UsageError(f"no notifier named {name!r} (the policy has: {known})")
    try:
        return list(load_targets(specs))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _github_issue(target: NotifyTarget, wait: int) -> tuple[bool, str]:
    # The CLI holds no GitHub client (an import contract): a worker runs the test and hands back its answer.
    web = state()
    job = tasks.enqueue(tasks.NOTIFY_TEST, target.name, connection=web.redis)
    status, result = tasks.wait_for(job.id, connection=web.redis, timeout=wait)
    if status == "finished":
        return True, str(result)
    if result is None:
        return False, NO_WORKER.format(wait=wait)
    return False, str(result)


@notify_cli.command("test")
@click.argument("name", required=False)
@click.option("--wait", default=60, show_default=True, type=click.IntRange(1, 600),
              help="seconds to wait for a worker (github-issue notifiers)")
def test_command(name: str | None, wait: int) -> None:
    """Send a test message to every notifier (or to NAME) and print what each answered."""
    failed = 0
    targets = _targets(name)
    if not targets:
        click.echo(NO_NOTIFIER)
    for target in targets:
        if target.kind == GITHUB_ISSUE:
            ok, said = _github_issue(target, wait)
        else:
            answer = notify_http.send(target, notify_bodies.sample_notice(time.time()),
                                      notice_id=f"test-{time.time()}", test=True)
            ok, said = answer.ok, str(answer)
        failed += not ok
        click.echo(f"{target.name} ({target.kind}): {'ok' if ok else 'FAILED'}: {said}")
    if failed:
        raise SystemExit(1)


def init_app(app: Flask) -> None:
    app.cli.add_command(notify_cli)
