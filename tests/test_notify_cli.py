"""`flask --app app notify test [NAME]`: a test message to each notifier, and what each answered."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask.cli import FlaskGroup

from app import create_app
from config import Settings, load_policy
from devtools.github_simulator import SimulatorServer
from tests.notify_receivers import NOTIFIERS, OPS, WEBHOOK_SECRET, Receiver


@pytest.fixture()
def cli_settings(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slack_receiver: Receiver,
                 ops_receiver: Receiver) -> Settings:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack_receiver.url)
    monkeypatch.setenv("OPS_WEBHOOK_URL", ops_receiver.url)
    monkeypatch.setenv("OPS_WEBHOOK_SECRET", WEBHOOK_SECRET)
    (tmp_path / "policy.toml").write_text(NOTIFIERS)
    return settings.with_overrides(policy_path=tmp_path / "policy.toml")


def invoke_with_worker(settings: Settings, args: list[str], drain: Any, github: Any) -> Result:
    """Run the command in a thread while this thread plays the worker (a github-issue test runs on one)."""
    runner = create_app(settings).test_cli_runner()
    out: dict[str, Result] = {}
    thread = threading.Thread(target=lambda: out.update(result=runner.invoke(args=args)))
    thread.start()
    policy = load_policy(settings.policy_path)
    while thread.is_alive():
        drain(("github",), policy, github=github)
        time.sleep(0.1)
    thread.join()
    return out["result"]


def test_notify_test_reaches_every_notifier_and_says_what_each_answered(  # type: ignore[no-untyped-def]
        cli_settings, redis_client, drain, github_sim: SimulatorServer, github_app, slack_receiver, ops_receiver) -> None:
    github_sim.add_repo(OPS, {"README.md": "ops\n"})
    github_sim.install([OPS])
    result = invoke_with_worker(cli_settings, ["notify", "test", "--wait", "30"], drain, github_app)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == "slack (slack): ok: HTTP 200: ok"
    assert lines[1] == "ops (webhook): ok: HTTP 200: ok"
    assert lines[2].startswith("issues (github-issue): ok: opened and closed test issue #1 in octo-org/ops")
    assert slack_receiver.bodies()[0]["text"] == "runnerguard test message"
    assert ops_receiver.bodies()[0]["event"] == "test" and ops_receiver.refused == []  # signed: it verified
    [issue] = github_sim.issues(OPS)
    assert issue.state == "closed" and github_sim.labels(OPS, issue.number) == ["runnerguard:test"]


def test_notify_test_names_a_failing_notifier_and_exits_non_zero(  # type: ignore[no-untyped-def]
        cli_settings, redis_client, slack_receiver, ops_receiver) -> None:
    slack_receiver.statuses = [404]
    runner = create_app(cli_settings).test_cli_runner()
    result = runner.invoke(args=["notify", "test", "slack"])
    assert result.exit_code == 1
    assert result.output.strip() == "slack (slack): FAILED: HTTP 404: nope"
    assert "secretpart" not in result.output  # the Slack URL is a secret: never printed
    assert ops_receiver.received == []  # NAME: only that notifier
    unknown = runner.invoke(args=["notify", "test", "pager"])
    assert unknown.exit_code == 2 and "the policy has: slack, ops, issues" in unknown.output


def test_notify_test_without_a_worker_says_so(cli_settings, redis_client) -> None:  # type: ignore[no-untyped-def]
    result = create_app(cli_settings).test_cli_runner().invoke(args=["notify", "test", "issues", "--wait", "1"])
    assert result.exit_code == 1 and "no worker answered within 1 s" in result.output


def test_notify_test_without_notifiers(app) -> None:  # type: ignore[no-untyped-def]
    result = app.test_cli_runner().invoke(args=["notify", "test"])
    assert result.exit_code == 0 and result.output.startswith("nothing to test: the policy declares no notifier")
    named = app.test_cli_runner().invoke(args=["notify", "test", "slack"])
    assert named.exit_code == 2 and "the policy has: none" in named.output


def test_a_missing_notifier_variable_is_one_line_under_the_flask_command(  # type: ignore[no-untyped-def]
        cli_settings, redis_client, monkeypatch) -> None:
    monkeypatch.delenv("OPS_WEBHOOK_SECRET")
    cli = FlaskGroup(create_app=lambda: create_app(cli_settings))
    result = CliRunner().invoke(cli, ["notify", "test"])
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: configuration: OPS_WEBHOOK_SECRET: is required by the ops notifier "
                                     "(notify secret_env), at least 16 characters (make run writes .env; see "
                                     ".env.example)")
