"""`[[notify]]` entries and their secrets: good ones load, a bad one stops start-up naming the key, no secret leaks."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from config import ConfigError, Settings, parse_policy
from config.notify_env import load_notify, load_targets
from config.notify_policy import EVENTS, NotifierSpec
from runnerguard.queue.deps import Deps

SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"
GOOD = """
[[notify]]
kind = "slack"
url_env = "SLACK_WEBHOOK_URL"
events = ["rollback", "blocked", "host", "watchdog", "restore"]

[[notify]]
kind = "webhook"
name = "ops"
url_env = "OPS_WEBHOOK_URL"
secret_env = "OPS_WEBHOOK_SECRET"
cooldown = "30m"

[[notify]]
kind = "github-issue"
repo = "Coldaine/ops"
"""


def test_the_issues_example_parses_with_defaults() -> None:
    policy = parse_policy(tomllib.loads(GOOD))
    slack, ops, issues = policy.notifiers
    assert (slack.kind, slack.name, slack.url_env, slack.cooldown_seconds) == ("slack", "slack-0", "SLACK_WEBHOOK_URL",
                                                                               3600)
    assert slack.events == ("rollback", "blocked", "host", "watchdog", "restore") and not slack.wants("healthy")
    assert (ops.name, ops.secret_env, ops.cooldown_seconds, ops.events) == ("ops", "OPS_WEBHOOK_SECRET", 1800, EVENTS)
    assert (issues.kind, issues.repo, issues.url_env) == ("github-issue", "Coldaine/ops", None)


def test_the_example_policy_file_declares_valid_notifiers() -> None:
    text = (Path(__file__).resolve().parents[1] / "config/policy.example.toml").read_text()
    assert parse_policy(tomllib.loads(text)).notifiers == ()  # commented out: copying it needs no secret
    head, notifiers = text.split("# Notifiers", 1)
    text = head + "\n".join(line.removeprefix("# ") for line in notifiers.splitlines()[2:])
    assert [n.kind for n in parse_policy(tomllib.loads(text)).notifiers] == ["slack", "webhook", "github-issue"]


@pytest.mark.parametrize(("table", "key"), [
    ({"kind": "email", "url_env": "X"}, "notify[0].kind"),
    ({"url_env": "X"}, "notify[0].kind"),
    ({"kind": "slack"}, "notify[0].url_env"),
    ({"kind": "slack", "url_env": SLACK_URL}, "notify[0].url_env"),  # the secret itself, pasted in the policy
    ({"kind": "slack", "url_env": "slack_url"}, "notify[0].url_env"),
    ({"kind": "slack", "url": SLACK_URL}, "notify[0].url"),
    ({"kind": "slack", "url_env": "S", "secret_env": "T"}, "notify[0].secret_env"),  # slack has nothing to sign
    ({"kind": "webhook", "url_env": "U"}, "notify[0].secret_env"),
    ({"kind": "github-issue"}, "notify[0].repo"),
    ({"kind": "github-issue", "repo": "../../etc"}, "notify[0].repo"),
    ({"kind": "github-issue", "repo": "a/b", "url_env": "U"}, "notify[0].url_env"),
    ({"kind": "slack", "url_env": "S", "events": ["rollback", "everything"]}, "notify[0].events"),
    ({"kind": "slack", "url_env": "S", "events": []}, "notify[0].events"),
    ({"kind": "slack", "url_env": "S", "events": "rollback"}, "notify[0].events"),
    ({"kind": "slack", "url_env": "S", "cooldown": "soon"}, "notify[0].cooldown"),
    ({"kind": "slack", "url_env": "S", "cooldown": 0}, "notify[0].cooldown"),
    ({"kind": "slack", "url_env": "S", "name": "a b"}, "notify[0].name"),
])
def test_a_bad_entry_names_its_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy({"notify": [table]})
    assert caught.value.key == key
    assert SLACK_URL not in str(caught.value)


def test_two_notifiers_with_one_name_and_a_bad_shape_are_refused() -> None:
    with pytest.raises(ConfigError, match="declared twice") as caught:
        parse_policy({"notify": [{"kind": "slack", "url_env": "A", "name": "x"},
                                 {"kind": "slack", "url_env": "B", "name": "x"}]})
    assert caught.value.key == "notify.x"
    with pytest.raises(ConfigError) as caught:
        parse_policy({"notify": {"kind": "slack"}})
    assert caught.value.key == "notify"
    with pytest.raises(ConfigError) as caught:
        parse_policy({"notify": ["slack"]})
    assert caught.value.key == "notify[0]"


def spec(kind: str = "slack", **kw: Any) -> NotifierSpec:
    base: dict[str, Any] = {"slack": {"url_env": "U"}, "webhook": {"url_env": "U", "secret_env": "S"},
                            "github-issue": {"repo": "a/b"}}[kind]
    return NotifierSpec(kind=kind, name=kind, **{**base, **kw})


@pytest.mark.parametrize("url", [
    "https://hooks.slack.com/services/T/B/X", "http://127.0.0.1:9000/hook", "http://[::1]:9000/hook",
    "http://localhost:8080/relay",
])
def test_https_and_loopback_urls_load(url: str) -> None:
    [target] = load_targets([spec()], {"U": url})
    assert target.url == url
    assert url not in repr(target)  # the URL of a Slack webhook is its secret


@pytest.mark.parametrize("url", [
    "http://hooks.slack.com/services/T/B/X",  # plain http off the machine
    "http://10.0.0.5/hook", "ftp://example.com/x", "file:///etc/passwd", "https://user:pw@example.com/x",
    "https://example.com/x#frag", "https://exa mple.com/", "https://example.com:99999/", "example.com/hook",
    "http://127.0.0.1.example.com/hook",  # a name that merely starts like loopback
])
def test_other_urls_stop_start_up_naming_the_variable_not_the_url(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_targets([spec()], {"U": url})
    assert caught.value.key == "U"
    assert url not in str(caught.value)


def test_a_missing_url_or_a_short_secret_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="required by the slack notifier") as caught:
        load_targets([spec()], {})
    assert caught.value.key == "U"
    with pytest.raises(ConfigError) as caught:
        load_targets([spec("webhook")], {"U": "https://example.com/h", "S": "short"})
    assert caught.value.key == "S" and "short" not in str(caught.value)
    [ok] = load_targets([spec("webhook")], {"U": "https://example.com/h", "S": "s" * 32})
    assert ok.secret == "s" * 32 and "s" * 32 not in repr(ok)
    assert load_targets([spec("github-issue")], {})[0].url == ""


def test_the_dashboard_url_is_checked_like_a_notifier_url() -> None:
    assert load_notify([], {"RUNNERGUARD_DASHBOARD_URL": "https://rg.example.com/"}).dashboard_url == \
        "https://rg.example.com"
    with pytest.raises(ConfigError) as caught:
        load_notify([], {"RUNNERGUARD_DASHBOARD_URL": "http://rg.example.com"})
    assert caught.value.key == "RUNNERGUARD_DASHBOARD_URL"


def test_the_web_service_and_the_worker_refuse_to_start_without_a_notifiers_secret(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[[notify]]\nkind = "slack"\nurl_env = "RG_TEST_SLACK_URL"\n')
    configured = settings.with_overrides(policy_path=policy)
    monkeypatch.delenv("RG_TEST_SLACK_URL", raising=False)
    with pytest.raises(ConfigError) as caught:
        create_app(configured)
    assert caught.value.key == "RG_TEST_SLACK_URL"
    with pytest.raises(ConfigError):
        Deps.from_settings(configured).notify()
    monkeypatch.setenv("RG_TEST_SLACK_URL", "https://hooks.slack.com/services/T/B/X")
    create_app(configured)
    assert Deps.from_settings(configured).notify().targets[0].url.startswith("https://hooks.slack.com/")
