"""Runner hosts: states over time, healthy_since, host Notices, the host_down trigger, [[host]] policy, /api/hosts,
the hosts CLI, the host gauges and the dashboard's Runner hosts section."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from config import ConfigError, Policy, Settings, parse_policy
from runnerguard.domain import agent_protocol, rules
from runnerguard.domain.hosts import HostStatus, state_for
from runnerguard.queue import tasks
from runnerguard.services import hosts as host_service
from runnerguard.services.rollback import RollbackService
from runnerguard.store import host_tokens, notices, rollback_state, work
from runnerguard.store import hosts as host_store
from tests.helpers import admin_headers
from tests.test_dashboard import login
from tests.test_timings import deliver, job_events

POLICY = """
[[pool]]
name = "laptop"
labels = ["self-hosted", "Linux", "X64"]
hosts = ["laptop-extra", "laptop-two"]

[[host]]
name = "laptop-extra"
runner_dir = "/home/coldaine/actions-runner"
cleanup_at = 0.80
"""
T0 = 1_800_000_000.0


def policy() -> Policy:
    return parse_policy(tomllib.loads(POLICY))


def report(runner: str = "listening", used: int = 500, **extra: Any) -> dict[str, Any]:
    return agent_protocol.parse_report({
        "agent_version": "0.1.0", "uptime": 10.0, "load": [0.1, 0.1, 0.1],
        "memory": {"total": 100, "available": 50},
        "disk": {"/home/coldaine/actions-runner/_work": {"total": 1000, "used": used, "free": 1000 - used}},
        "runner": {"state": runner, "detail": "", "job": None, "service": None}, **extra})


@pytest.fixture()
def hosts_app(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> Flask:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return create_app(settings.with_overrides(policy_path=path))


# --- states over time -------------------------------------------------------------------------------------------

def test_states_follow_the_age_of_the_last_report() -> None:
    assert state_for(None, T0) == "down"
    assert [state_for(T0, T0 + age) for age in (0, 120, 121, 600, 601)] == ["up", "up", "stale", "stale", "down"]


def test_host_status_over_time(redis_client: redis.Redis) -> None:
    rules_ = policy()
    host_store.save_report(redis_client, rules_, "laptop-extra", report("busy"), now=T0)
    at = {age: host_store.get_status(redis_client, rules_, "laptop-extra", now=T0 + age) for age in (30, 300, 900)}
    assert [(s.state, s.runner) for s in at.values() if s] == [("up", "busy"), ("stale", "unknown"),
                                                               ("down", "unknown")]
    assert at[900] is not None and at[900].why_unavailable(T0 + 900) == "laptop-extra: no report for 15m"
    assert host_store.get_status(redis_client, rules_, "nobody", now=T0) is None


def test_healthy_since_lasts_until_a_break(redis_client: redis.Redis) -> None:
    rules_ = policy()

    def since(at: float, **kw: Any) -> float | None:
        return host_store.save_report(redis_client, rules_, "laptop-extra", report(**kw), now=at).healthy_since

    assert since(T0) == T0
    assert since(T0 + 30, runner="busy") == T0
    assert since(T0 + 60, used=850) is None  # a disk past cleanup_at (0.80) breaks it
    assert since(T0 + 90) == T0 + 90
    assert since(T0 + 120, runner="offline") is None
    assert since(T0 + 150) == T0 + 150
    assert since(T0 + 150 + 400) == T0 + 550  # 400 s without a report is a break too


# --- Notices ----------------------------------------------------------------------------------------------------

def test_host_notices_on_transitions_only(redis_client: redis.Redis) -> None:
    rules_ = policy()
    host_store.save_report(redis_client, rules_, "laptop-extra", report(), now=T0)
    assert host_service.check_hosts(redis_client, rules_, now=T0 + 10)["down"] == []
    assert host_service.check_hosts(redis_client, rules_, now=T0 + 300) == {"down": [], "up": [], "cleanups": []}
    assert host_service.check_hosts(redis_client, rules_, now=T0 + 700)["down"] == ["laptop-extra"]
    assert host_service.check_hosts(redis_client, rules_, now=T0 + 800)["down"] == []  # told once
    host_store.save_report(redis_client, rules_, "laptop-extra", report(), now=T0 + 900)
    assert host_service.check_hosts(redis_client, rules_, now=T0 + 910)["up"] == ["laptop-extra"]
    assert host_service.check_hosts(redis_client, rules_, now=T0 + 920)["up"] == []
    told = [n for _, n in notices.since(redis_client)]
    assert [(n.event, n.state, n.host, n.pool, n.resolved) for n in told] == [
        ("host", "down", "laptop-extra", "laptop", False), ("host", "up", "laptop-extra", "laptop", True)]
    assert "no report for 11m" in told[0].summary


def test_each_reported_cleanup_becomes_one_notice(redis_client: redis.Redis) -> None:
    rules_ = policy()
    cleanups = [{"at": T0, "freed_bytes": 5 * 2**30, "removed": ["/home/coldaine/actions-runner/_work/_temp"],
                 "dry_run": False}]
    host_store.save_report(redis_client, rules_, "laptop-extra", report(cleanups=cleanups), now=T0)
    assert host_service.check_hosts(redis_client, rules_, now=T0 + 1)["cleanups"] == ["laptop-extra"]
    assert host_service.check_hosts(redis_client, rules_, now=T0 + 2)["cleanups"] == []
    (notice,) = [n for _, n in notices.since(redis_client)]
    assert (notice.event, notice.host, notice.state) == ("cleanup", "laptop-extra", "cleaned")
    assert "freed 5,120 MiB (1 paths)" in notice.summary


# --- the host_down trigger --------------------------------------------------------------------------------------

def test_host_down_rule_states_its_evidence() -> None:
    fired = rules.host_down("laptop", hosts=1, unavailable=["laptop-extra: no report for 14m"], waiting_longer=3,
                            after_seconds=900)
    assert fired.fire and fired.reason == ("every host of laptop is down (laptop-extra: no report for 14m); "
                                           "3 jobs waiting longer than 15m")
    assert not rules.host_down("laptop", hosts=2, unavailable=["a: runner offline"], waiting_longer=3,
                               after_seconds=900).fire
    assert not rules.host_down("laptop", hosts=1, unavailable=["a: x"], waiting_longer=0, after_seconds=900).fire
    assert not rules.host_down("laptop", hosts=0, unavailable=[], waiting_longer=9, after_seconds=900).fire


def test_host_down_fires_from_the_sweep_and_stays_quiet_otherwise(client: FlaskClient, redis_client: redis.Redis,
                                                                  drain: Any) -> None:
    now = time.time()
    rules_ = policy()
    service = RollbackService(redis=redis_client, policy=rules_, github=None, clock=lambda: now)
    for n in range(3):  # queued 20 minutes ago, still waiting
        deliver(client, job_events(7000 + n, "success", created=now - 1200, labels=["self-hosted", "Linux", "X64"],
                                   repo="octo/app", repo_id=3)[0], f"wait-{n}")
    drain(policy=rules_)
    # Both hosts reporting, runners listening: quiet.
    for host in ("laptop-extra", "laptop-two"):
        host_store.save_report(redis_client, rules_, host, report(), now=now - 10)
    assert service.host_down_decision(rules_.pools[0]).fire is False
    # One host offline, the other up: quiet (a runner can still take the jobs).
    host_store.save_report(redis_client, rules_, "laptop-two", report("offline"), now=now - 5)
    quiet = service.host_down_decision(rules_.pools[0])
    assert not quiet.fire and quiet.reason.startswith("1 of 2 hosts of laptop up")
    # Both unavailable: fires, once.
    host_store.save_report(redis_client, rules_, "laptop-extra", report(), now=now - 840)
    decision = service.host_down_decision(rules_.pools[0])
    assert decision.fire
    assert decision.reason == ("every host of laptop is down (laptop-extra: no report for 14m; laptop-two: runner "
                               "offline); 3 jobs waiting longer than 15m")
    assert service.sweep()["triggered"] == {"laptop": ["octo/app"]}
    assert rollback_state.load_pending(redis_client, "laptop", "octo/app")["trigger"] == "host_down"
    assert tasks.queue("github", redis_client).count == 1
    assert service.sweep()["triggered"] == {}  # already queued: not twice


def test_host_down_waits_for_after(client: FlaskClient, redis_client: redis.Redis, drain: Any) -> None:
    now = time.time()
    rules_ = parse_policy({**tomllib.loads(POLICY), "rollback": {"host_down": {"after": "30m"}}})
    deliver(client, job_events(7100, "success", created=now - 1200, labels=["self-hosted", "Linux", "X64"])[0], "w")
    drain(policy=rules_)
    service = RollbackService(redis=redis_client, policy=rules_, github=None, clock=lambda: now)
    decision = service.host_down_decision(rules_.pools[0])  # no host ever reported: all down, but 20m < 30m
    assert not decision.fire and "0 jobs waiting longer than 30m" in decision.reason


# --- policy -----------------------------------------------------------------------------------------------------

def test_host_tables_parse_with_defaults() -> None:
    spec = policy().host("laptop-extra")
    assert spec is not None and (spec.cleanup_at, spec.keep_days, spec.dry_run, spec.service) == (0.8, 7, False, None)
    assert policy().host_names() == ["laptop-extra", "laptop-two"]
    assert policy().rollback.host_down.after_seconds == 900


@pytest.mark.parametrize(("table", "key"), [
    ({"name": "a", "runner_dir": "/r", "colour": "red"}, "host[0].colour"),
    ({"runner_dir": "/r"}, "host[0].name"),
    ({"name": "a\n", "runner_dir": "/r"}, "host[0].name"),
    ({"name": "../a", "runner_dir": "/r"}, "host[0].name"),
    ({"name": "a"}, "host.a.runner_dir"),
    ({"name": "a", "runner_dir": "relative"}, "host.a.runner_dir"),
    ({"name": "a", "runner_dir": "/r/../etc"}, "host.a.runner_dir"),
    ({"name": "a", "runner_dir": "/r", "cleanup_at": 1.5}, "host.a.cleanup_at"),
    ({"name": "a", "runner_dir": "/r", "keep_days": 0}, "host.a.keep_days"),
    ({"name": "a", "runner_dir": "/r", "dry_run": "yes"}, "host.a.dry_run"),
    ({"name": "a", "runner_dir": "/r", "service": "x; rm -rf /"}, "host.a.service"),
])
def test_a_bad_host_table_stops_start_up_naming_the_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy({"host": [table]})
    assert caught.value.key == key


def test_bad_host_down_settings_name_the_key() -> None:
    for table, key in (({"after": "soon"}, "rollback.host_down.after"), ({"min": 1}, "rollback.host_down.min")):
        with pytest.raises(ConfigError) as caught:
            parse_policy({"rollback": {"host_down": table}})
        assert caught.value.key == key
    with pytest.raises(ConfigError) as caught:
        parse_policy({"host": [{"name": "a", "runner_dir": "/r"}, {"name": "a", "runner_dir": "/s"}]})
    assert caught.value.key == "host.a"


# --- admin API and CLI ------------------------------------------------------------------------------------------

def test_api_hosts_adds_lists_and_revokes(hosts_app: Flask, redis_client: redis.Redis) -> None:
    client = hosts_app.test_client()
    created = client.post("/api/hosts", json={"name": "laptop-extra"}, headers=admin_headers())
    assert created.status_code == 201
    token = created.get_json()["token"]
    assert host_tokens.host_for(redis_client, token) == "laptop-extra"
    again = client.post("/api/hosts", json={"name": "laptop-extra"}, headers=admin_headers())
    assert again.status_code == 409 and token not in again.get_data(as_text=True)
    rows = client.get("/api/hosts", headers=admin_headers()).get_json()["hosts"]
    assert [r["name"] for r in rows] == ["laptop-extra", "laptop-two"]
    assert token not in client.get("/api/hosts", headers=admin_headers()).get_data(as_text=True)
    assert client.delete("/api/hosts/laptop-extra", headers=admin_headers()).get_json() == {
        "name": "laptop-extra", "revoked": True}
    assert host_tokens.host_for(redis_client, token) is None
    assert client.delete("/api/hosts/laptop-extra", headers=admin_headers()).status_code == 404


@pytest.mark.parametrize("body", [{"name": "../etc"}, {"name": "a" * 65}, {"name": ""}, {"name": ".."},
                                  {"name": "a\n"}, {"name": 5}, {"name": "a", "token": "mine"}, ["a"], None])
def test_api_hosts_refuses_bad_names_and_bodies(hosts_app: Flask, body: Any) -> None:
    answer = hosts_app.test_client().post("/api/hosts", json=body, headers=admin_headers())
    assert answer.status_code == 400


def test_api_hosts_needs_the_admin_token(hosts_app: Flask) -> None:
    client = hosts_app.test_client()
    for method, path in (("get", "/api/hosts"), ("post", "/api/hosts"), ("delete", "/api/hosts/laptop-extra")):
        assert getattr(client, method)(path, json={"name": "x"}).status_code == 401
        assert getattr(client, method)(path, json={"name": "x"}, headers=admin_headers("wrong")).status_code == 403
    # a host token is not an admin token
    token = host_tokens.add(hosts_app.extensions["runnerguard"].redis, "laptop-extra", now=T0)
    assert client.get("/api/hosts", headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_hosts_cli_add_list_revoke(hosts_app: Flask, redis_client: redis.Redis) -> None:
    runner = hosts_app.test_cli_runner()
    added = runner.invoke(args=["hosts", "add", "laptop-extra"])
    assert added.exit_code == 0, added.output
    token = added.output.strip().splitlines()[-1]
    assert token.startswith("rgh_") and " " not in token
    assert host_tokens.host_for(redis_client, token) == "laptop-extra"
    assert runner.invoke(args=["hosts", "add", "laptop-extra"]).exit_code != 0
    assert "must be 1-64" in runner.invoke(args=["hosts", "add", "../x"]).output
    host_store.save_report(redis_client, policy(), "laptop-extra", report(), now=T0)
    listed = runner.invoke(args=["hosts", "list"]).output
    assert "laptop-extra" in listed and "last seen 2027-01-15T08:00:00Z" in listed and token not in listed
    assert runner.invoke(args=["hosts", "revoke", "laptop-extra"]).exit_code == 0
    assert host_tokens.host_for(redis_client, token) is None
    assert runner.invoke(args=["hosts", "revoke", "laptop-extra"]).exit_code != 0
    assert "no hosts" in runner.invoke(args=["hosts", "list"]).output


# --- metrics and dashboard --------------------------------------------------------------------------------------

def test_host_gauges_on_metrics(hosts_app: Flask, redis_client: redis.Redis) -> None:
    host_store.save_report(redis_client, policy(), "laptop-extra", report("busy", used=850), now=time.time())
    text = hosts_app.test_client().get("/metrics").get_data(as_text=True)
    assert 'runnerguard_host_up{host="laptop-extra"} 1' in text
    assert 'runnerguard_host_up{host="laptop-two"} 0' in text
    assert ('runnerguard_host_disk_used_ratio{host="laptop-extra",path="/home/coldaine/actions-runner/_work"} 0.85'
            in text)
    assert 'runnerguard_host_runner{host="laptop-extra",state="busy"} 1' in text
    assert 'runnerguard_host_runner{host="laptop-extra",state="offline"} 0' in text
    assert 'runnerguard_host_runner{host="laptop-two",state="unknown"} 1' in text


def test_dashboard_shows_the_runner_hosts_first(hosts_app: Flask, redis_client: redis.Redis) -> None:
    client = hosts_app.test_client()
    busy = report("busy", used=900)
    busy["runner"]["job"] = {"name": "build <script>"}
    host_store.save_report(redis_client, policy(), "laptop-extra", busy, now=time.time())
    login(client)
    page = client.get("/").get_data(as_text=True)
    section = page[page.index('<section id="hosts">'):page.index("</section>", page.index('<section id="hosts">'))]
    assert page.index('id="hosts"') < page.index('id="scorecard"')
    assert "laptop-extra" in section and "laptop-two" in section and "never" in section
    assert "busy" in section and "90%" in section and "cleanup at 80%" in section and 'class="disk over"' in section
    assert "build &lt;script&gt;" in section and "<script>" not in section


def test_host_status_public_row_has_the_interface_fields() -> None:
    row = HostStatus.from_report("h", None, cleanup_at=0.8, now=T0).public()
    assert {"name", "last_seen", "state", "disk", "memory", "load", "runner", "job", "agent_version"} <= set(row)


def test_work_a_host_never_fetched_is_dropped_after_a_day(redis_client: redis.Redis) -> None:
    from_yesterday = work.create(redis_client, "laptop-two", job_id=1, kind="cache", name="c", now=T0 - 86401)
    today = work.create(redis_client, "laptop-two", job_id=2, kind="cache", name="c", now=T0 - 60)
    assert from_yesterday and today
    host_service.check_hosts(redis_client, policy(), now=T0)
    assert [i["job_id"] for i in work.claim(redis_client, "laptop-two", now=T0)] == [2]
