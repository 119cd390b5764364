"""Notifiers end to end: real deliveries open a rollback, its notice reaches a loopback Slack receiver, a webhook
receiver that verifies the signature and an outage issue in the GitHub simulator; cooldown, resolved, one issue."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import redis
import requests
from flask.testing import FlaskClient

from app import create_app
from config import Policy, parse_policy
from config.notify_env import load_notify
from devtools.github_simulator import SimulatorServer
from runnerguard.domain.notices import Notice
from runnerguard.github import GitHubApp
from runnerguard.services import notify, notify_delivery
from runnerguard.store import jobstore, notices, notify_state, rollback_state
from tests.github_fixtures import REPO
from tests.notify_receivers import NOTIFIERS, OPS, WEBHOOK_SECRET, Receiver
from tests.test_dashboard import login
from tests.test_rollback import FILES, feed
from tests.test_watchdog import hung, make, seen

POOL = "self-hosted"


@pytest.fixture()
def notify_env(monkeypatch: pytest.MonkeyPatch, slack_receiver: Receiver, ops_receiver: Receiver) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack_receiver.url)
    monkeypatch.setenv("OPS_WEBHOOK_URL", ops_receiver.url)
    monkeypatch.setenv("OPS_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("RUNNERGUARD_DASHBOARD_URL", "https://runnerguard.example.com")




def notify_policy() -> Policy:
    return parse_policy(tomllib.loads(NOTIFIERS))


@pytest.fixture()
def sims(github_sim: SimulatorServer) -> int:
    """The workflow repo and the ops repo, both with the App installed (one installation)."""
    github_sim.add_repo(REPO, FILES)
    github_sim.add_repo(OPS, {"README.md": "ops\n"})
    return github_sim.install([REPO, OPS])


@pytest.fixture()
def run_all(drain: Callable[..., int], github_app: GitHubApp, notify_env: None) -> Callable[..., int]:
    def run(policy: Policy | None = None) -> int:
        return drain(("events", "github"), policy or notify_policy(), github=github_app, one_queue_at_a_time=True)

    return run


def rollback_notice(client: redis.Redis, *, now: float | None = None) -> Notice:
    """The notice the rollback service emits when it opened the PR (attrib's emit, not on main yet: built here from
    the recorded rollback state, with the evidence the trigger counted)."""
    state = rollback_state.load(client, POOL, REPO)
    finished, failed = jobstore.window_counts(client, POOL, time.time() - 86400)
    return Notice(event="rollback", state=state.state, pool=POOL, repo=REPO, at=now or time.time(),
                  summary=f"runnerguard opened a rollback pull request because {state.reason or 'it was asked'}.",
                  evidence={"rate": failed / finished if finished else 0.0, "failed": failed, "finished": finished,
                            "window_seconds": 86400, "threshold": 0.5, "trigger": state.trigger,
                            "reason": state.reason},
                  links={"pr": state.pr_url or ""})


def healthy_notice() -> Notice:
    return Notice(event="healthy", state="healthy", pool=POOL, repo=REPO, at=time.time(), resolved=True,
                  summary="2 of 20 jobs failed in the last 24h, below the 50% threshold.",
                  evidence={"rate": 0.1, "failed": 2, "finished": 20})


def outage_issues(github_sim: SimulatorServer) -> list[Any]:
    return [i for i in github_sim.issues(OPS) if "runnerguard:outage" in github_sim.labels(OPS, i.number)]


def test_a_crossing_notifies_each_notifier_once_then_cooldown_then_resolved_closes_the_issue(  # type: ignore[no-untyped-def]
        client: FlaskClient, github_sim, sims, run_all, redis_client, slack_receiver, ops_receiver) -> None:
    feed(client, failures=13, total=21)
    run_all()
    state = rollback_state.load(redis_client, POOL, REPO)
    assert state.state == "pr_open" and state.pr_url  # real deliveries opened the rollback PR
    started = time.monotonic()
    run_all()  # the rollback service emitted its notice as it opened the PR (issue #14): delivered now
    took = time.monotonic() - started
    assert took < 60
    assert len(slack_receiver.received) == 1 and len(ops_receiver.received) == 1
    slack = slack_receiver.bodies()[0]
    assert "Pool self-hosted is failing" in slack["text"] and "blocks" in slack
    rendered = str(slack["blocks"])
    assert "62%" in rendered and state.pr_url in rendered and "https://runnerguard.example.com/#pool-self-hosted" \
        in rendered and "Next step" in rendered
    hook = ops_receiver.bodies()[0]
    assert hook["schema"] == "runnerguard.notice/1"
    assert (hook["event"], hook["state"], hook["pool"], hook["repo"], hook["resolved"]) == \
        ("rollback", "pr_open", POOL, REPO, False)
    assert hook["evidence"]["failed"] == 13 and hook["links"]["pr"] == state.pr_url and hook["at"].endswith("Z")
    assert ops_receiver.received[0]["headers"]["X-Runnerguard-Delivery"] == hook["delivery_id"]
    assert ops_receiver.refused == []
    issues = outage_issues(github_sim)
    assert len(issues) == 1 and issues[0].state == "open"
    assert issues[0].title.startswith("runnerguard: pool self-hosted is down")
    assert issues[0].user.endswith("[bot]")

    # A second crossing within the cooldown: nothing new anywhere (the issue notes it for its summary).
    feed(client, failures=6, total=6, start=3000)
    run_all()
    notify.emit(redis_client, rollback_notice(redis_client))
    run_all()
    assert len(slack_receiver.received) == 1 and len(ops_receiver.received) == 1
    assert len(outage_issues(github_sim)) == 1 and github_sim.comments(OPS, issues[0].number) == []
    assert notify_state.status(redis_client, "slack")["last_result"] == "suppressed"

    # The pool is healthy again: a resolved message to each, and the issue closes with a summary.
    notify.emit(redis_client, healthy_notice())
    notify.emit(redis_client, healthy_notice())  # emitted twice (a retried producer): still one message
    run_all()
    assert len(slack_receiver.received) == 2 and len(ops_receiver.received) == 2
    assert slack_receiver.bodies()[1]["text"] == "Resolved: Pool self-hosted is healthy again"
    assert (ops_receiver.bodies()[1]["event"], ops_receiver.bodies()[1]["resolved"]) == ("healthy", True)
    [closed] = outage_issues(github_sim)
    assert closed.number == issues[0].number and closed.state == "closed"
    [summary] = github_sim.comments(OPS, closed.number)
    assert "healthy again" in summary and "What runnerguard did" in summary and "lasted" in summary
    assert "| 19 |" in summary  # 13 failed at the opening, 6 more while it lasted
    assert summary.count("Pool `self-hosted` is failing") == 0  # payload strings are prose-escaped, not code
    # After the resolution, a new outage is news at once (the cooldown was cleared): a new message, a new issue.
    notify.emit(redis_client, rollback_notice(redis_client))
    run_all()
    assert len(slack_receiver.received) == 3
    assert [i.state for i in outage_issues(github_sim)] == ["closed", "open"]


def test_metrics_and_dashboard_show_each_notifiers_result_and_last_error(  # type: ignore[no-untyped-def]
        client: FlaskClient, app, github_sim, sims, run_all, redis_client, slack_receiver, ops_receiver) -> None:
    slack_receiver.statuses = [404]  # Slack's answer for a revoked webhook: permanent, recorded, not retried
    notify.emit(redis_client, rollback_notice(redis_client))
    run_all()
    assert len(ops_receiver.received) == 1  # one failing notifier delays no other
    status = notify_state.status(redis_client, "slack")
    assert status["last_result"] == "error" and "HTTP 404" in status["last_error"]
    assert "secretpart" not in status["last_error"]  # the webhook URL is the secret: never recorded
    scrape = client.get("/metrics").get_data(as_text=True)
    assert 'runnerguard_notify_total{notifier="slack",result="error"} 1' in scrape
    assert 'runnerguard_notify_total{notifier="ops",result="sent"} 1' in scrape
    assert "# TYPE runnerguard_notify_total counter" in scrape


def test_the_dashboard_shows_each_notifiers_last_error_escaped(  # type: ignore[no-untyped-def]
        settings, tmp_path, github_sim, sims, run_all, redis_client, slack_receiver, ops_receiver) -> None:
    slack_receiver.statuses = [400]
    slack_receiver.answer = "<script>alert(1)</script> invalid_payload"
    notify.emit(redis_client, rollback_notice(redis_client))
    run_all()
    policy = tmp_path / "policy.toml"
    policy.write_text(NOTIFIERS)
    client = create_app(settings.with_overrides(policy_path=policy)).test_client()
    login(client)
    page = client.get("/").get_data(as_text=True)
    section = page[page.index('<section id="notifiers">'):]
    section = section[:section.index("</section>")]
    assert 'data-name="slack"' in section and 'data-name="ops"' in section and 'data-name="issues"' in section
    assert "HTTP 400: &lt;script&gt;alert(1)&lt;/script&gt; invalid_payload" in section
    assert "<script>" not in section
    assert ">sent<" in section and ">error<" in section


def test_a_failing_notifier_never_blocks_the_rollback(  # type: ignore[no-untyped-def]
        client: FlaskClient, github_sim, sims, run_all, redis_client, slack_receiver, ops_receiver) -> None:
    slack_receiver.statuses = [500] * 10
    ops_receiver.statuses = [503] * 10
    feed(client, failures=13, total=21)
    run_all()  # the rollback service emits its notice as it opens the PR
    run_all()
    assert rollback_state.load(redis_client, POOL, REPO).state == "pr_open"
    assert len(github_sim.pulls(REPO)) == 1
    # 5xx: the delivery waits for its retry (scheduled with backoff), recorded as an error meanwhile
    assert notify_state.status(redis_client, "ops")["last_result"] == "error"
    assert "HTTP 503" in notify_state.status(redis_client, "ops")["last_error"]


def test_emit_with_redis_refusing_the_queue_still_returns(redis_client: redis.Redis) -> None:
    """A notice must never fail its producer: a closed connection gives "" instead of an exception."""
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    assert notify.emit(dead, healthy_notice()) == ""


def test_a_redirect_is_never_followed(  # type: ignore[no-untyped-def]
        client: FlaskClient, github_sim, sims, run_all, redis_client, slack_receiver, ops_receiver,
        other_host) -> None:
    ops_receiver.statuses = [307]
    ops_receiver.location = other_host.url
    notify.emit(redis_client, rollback_notice(redis_client))
    run_all()
    assert other_host.received == [] and ops_receiver.received == []
    assert "redirect" in notify_state.status(redis_client, "ops")["last_error"]


def test_a_retry_carries_the_same_delivery_id_and_a_forged_body_is_refused(  # type: ignore[no-untyped-def]
        github_sim, sims, notify_env, redis_client, slack_receiver, ops_receiver) -> None:
    config = load_notify(notify_policy().notifiers)
    ops_receiver.statuses = [502]
    entry = notices.append(redis_client, rollback_notice(redis_client))
    with pytest.raises(notify_delivery.NotifierAway, match="HTTP 502"):
        notify_delivery.deliver(redis_client, config, None, entry, "ops", now=time.time())
    assert notify_delivery.deliver(redis_client, config, None, entry, "ops", now=time.time()) == "HTTP 200: ok"
    assert len(ops_receiver.attempts) == 2 and len(set(ops_receiver.attempts)) == 1
    # The fan-out ran again (its own retry, a replay): the notice that reached the notifier is not sent again.
    assert notify_delivery.fan_out(redis_client, notify_policy(), entry) == ["slack", "ops", "issues"]
    assert notify_delivery.deliver(redis_client, config, None, entry, "ops", now=time.time()) == "already sent"
    assert len(ops_receiver.attempts) == 2
    assert ops_receiver.refused == []
    # Someone who knows the URL but not the secret: the receiver's check refuses what they send.
    sent = ops_receiver.received[0]
    forged = sent["body"].replace(b'"rollback"', b'"healthy"')
    answer = requests.post(ops_receiver.url, data=forged, timeout=5, headers={
        "X-Runnerguard-Signature-256": sent["headers"]["X-Runnerguard-Signature-256"],
        "X-Runnerguard-Delivery": "another"})
    assert answer.status_code == 401 and ops_receiver.refused == ["bad signature"]


def test_host_down_and_up_reach_slack_once_each(  # type: ignore[no-untyped-def]
        github_sim, sims, run_all, redis_client, slack_receiver, ops_receiver) -> None:
    down = Notice(event="host", state="down", host="box-1", pool=POOL, at=time.time(),
                  summary="box-1 has not reported for 12 minutes.", evidence={"last_seen": time.time() - 720})
    notify.emit(redis_client, down)
    notify.emit(redis_client, down)  # the periodic check saw it again: held back
    run_all()
    assert [b["text"] for b in slack_receiver.bodies()] == ["Runner host box-1 is down"]
    assert outage_issues(github_sim) == []  # a host alone opens no pool outage issue
    notify.emit(redis_client, Notice(event="host", state="up", host="box-1", pool=POOL, at=time.time(),
                                     resolved=True, summary="box-1 reports again."))
    run_all()
    assert [b["text"] for b in slack_receiver.bodies()][1:] == ["Resolved: Runner host box-1 is back up"]
    assert [b["state"] for b in ops_receiver.bodies()] == ["down", "up"]


def test_events_filter_what_a_notifier_hears_but_not_the_end_of_what_it_heard(  # type: ignore[no-untyped-def]
        github_sim, sims, drain, github_app, notify_env, redis_client, slack_receiver, ops_receiver) -> None:
    policy = parse_policy(tomllib.loads(NOTIFIERS.replace('url_env = "SLACK_WEBHOOK_URL"',
                                                          'url_env = "SLACK_WEBHOOK_URL"\nevents = ["rollback"]')))
    assert policy.notifiers[0].events == ("rollback",)
    run = lambda: drain(("github",), policy, github=github_app)  # noqa: E731
    notify.emit(redis_client, Notice(event="cleanup", state="done", host="box-1", pool=POOL, at=time.time(),
                                     summary="freed 12 GB", evidence={"freed_bytes": 12e9}))
    run()
    assert slack_receiver.received == [] and [b["event"] for b in ops_receiver.bodies()] == ["cleanup"]
    notify.emit(redis_client, replace(rollback_notice(redis_client), state="pr_open"))
    notify.emit(redis_client, healthy_notice())
    run()
    assert [b["text"] for b in slack_receiver.bodies()] == [
        "Pool self-hosted is failing: runnerguard opened a rollback pull request in octo-org/hello-world",
        "Resolved: Pool self-hosted is healthy again"]


def test_a_real_watchdog_cancel_reaches_the_notifiers(  # type: ignore[no-untyped-def]
        github_sim, sim_repo, github_app, fake_clock, drain, notify_env, redis_client, slack_receiver,
        ops_receiver) -> None:
    """The watchdog's own emit (issue #15, on main): a hung job cancelled, and the people hear of it once."""
    table = tomllib.loads(NOTIFIERS)
    policy = parse_policy({"pool": [{"name": "laptop", "labels": ["self-hosted", "laptop"], "max_run": "90m"}],
                           "notify": table["notify"][:2]})
    job = hung(github_sim, fake_clock)
    seen(redis_client, github_sim, job, "in_progress", policy, fake_clock() - 7200)
    assert make(redis_client, github_app, policy, fake_clock).sweep_timeouts().acted == [f"cancel {job.id}"]
    drain(("github",), policy, github=github_app)
    [slack] = slack_receiver.bodies()
    assert slack["text"] == f"runnerguard's watchdog cancelled a stuck job of pool laptop in {REPO}"
    assert f"/job/{job.id}" in str(slack["blocks"])
    [hook] = ops_receiver.bodies()
    assert (hook["event"], hook["state"], hook["evidence"]["job_id"]) == ("watchdog", "cancelled", job.id)
