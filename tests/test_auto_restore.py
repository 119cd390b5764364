"""`restore = "auto"`: after the rollback PR merged, the restore PR opens itself once the pool's host has reported
well for restore_after (issue #14 section 4), on the GitHub simulator, with the evidence in its body."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from config import ConfigError, parse_policy
from runnerguard.github import GitHubApp
from runnerguard.services.rollback import RollbackService
from runnerguard.store import hosts, keys, rollback_state
from tests.github_fixtures import REPO
from tests.test_rollback import FILES, feed

POLICY = {
    "pool": [{"name": "laptop", "labels": ["self-hosted", "Linux", "X64"], "hosts": ["laptop-extra"],
              "restore": "auto", "restore_after": "6h"}],
    "host": [{"name": "laptop-extra", "runner_dir": "/home/runner/actions-runner", "cleanup_at": 0.8}],
}


@pytest.fixture()
def laptop_repo(github_sim) -> str:  # type: ignore[no-untyped-def]
    github_sim.add_repo(REPO, FILES)
    github_sim.install([REPO])
    return REPO


@pytest.fixture()
def run_all(drain, github_app: GitHubApp):  # type: ignore[no-untyped-def]
    """Drain events, then github, with a GitHub App that talks to the simulator."""
    return lambda policy: drain(("events", "github"), policy, github=github_app, one_queue_at_a_time=True)


def report(runner: str = "listening", used: int = 40) -> dict[str, Any]:
    return {"agent_version": "test", "uptime": 100.0, "load": [0.1, 0.1, 0.1],
            "memory": {"total": 8 << 30, "available": 4 << 30},
            "disk": {"/home/runner/actions-runner": {"total": 100, "used": used, "free": 100 - used}},
            "runner": {"state": runner, "detail": "", "job": None, "service": None}, "cleanups": [],
            "cache_answers": {}}


def well_for(client: redis.Redis, policy: Any, *, start: float, end: float, broken_at: float | None = None) -> None:
    """A report a minute from `start` to `end`, as the agent sends them (one offline report at `broken_at`)."""
    at = start
    while at <= end:
        offline = broken_at is not None and abs(at - broken_at) < 30
        hosts.save_report(client, policy, "laptop-extra", report(runner="offline" if offline else "listening"), now=at)
        at += 60


def rolled_back(client, github_sim, run_all, policy) -> None:  # type: ignore[no-untyped-def]
    feed(client, failures=13, total=21)
    run_all(policy)
    pr = github_sim.pulls(REPO)[0]
    github_sim.merge_pull(REPO, pr.number)


def test_an_auto_pool_restores_itself_once_its_host_is_well_for_restore_after(  # type: ignore[no-untyped-def]
        client, github_sim, laptop_repo, run_all, redis_client, drain, github_app) -> None:
    policy = parse_policy(POLICY)
    rolled_back(client, github_sim, run_all, policy)
    # The failures that caused the rollback (2 h ago) are runner failures: while they are inside the last
    # restore_after the pool is not proven well, so the sweep runs 5 h later, when they are 7 h old.
    now = time.time() + 5 * 3600
    service = RollbackService(redis=redis_client, policy=policy, github=github_app, clock=lambda: now)
    service.prs.check_open_pulls()
    assert rollback_state.load(redis_client, "laptop", REPO).state == rollback_state.ROLLED_BACK
    # the failures themselves hold a restore back while they are recent
    well_for(redis_client, policy, start=now - 7 * 3600, end=now - 4 * 3600)
    early = RollbackService(redis=redis_client, policy=policy, github=github_app, clock=lambda: now - 4 * 3600)
    assert early.sweep()["restoring"] == []
    redis_client.delete(keys.host_report("laptop-extra"))
    # well for 5 h only: nothing yet
    well_for(redis_client, policy, start=now - 5 * 3600, end=now)
    assert service.sweep()["restoring"] == []
    # well for 6 h 10 m, a report a minute: the restore PR opens, once, however often the sweep runs
    redis_client.delete(keys.host_report("laptop-extra"))  # a fresh start: the agent was away
    well_for(redis_client, policy, start=now - 6 * 3600 - 600, end=now)
    assert service.sweep()["restoring"] == [f"laptop/{REPO}"]
    assert service.sweep()["restoring"] == []  # queued already
    run_all(policy)
    restore = next(p for p in github_sim.pulls(REPO) if p.head == "runnerguard/restore/laptop")
    assert "### Why now" in restore.body
    assert "laptop-extra: up, runner listening, disk 40% of /home/runner/actions-runner (cleanup at 80%); well for 6h" \
        in restore.body
    assert "no job failed for the runner's own reasons in the last 6h" in restore.body
    assert rollback_state.load(redis_client, "laptop", REPO).state == rollback_state.RESTORING
    assert service.sweep()["restoring"] == []  # restoring, not rolled back: nothing more to do


def test_a_break_in_the_hosts_health_restarts_the_wait(  # type: ignore[no-untyped-def]
        client, github_sim, laptop_repo, run_all, redis_client, github_app) -> None:
    policy = parse_policy(POLICY)
    rolled_back(client, github_sim, run_all, policy)
    now = time.time() + 5 * 3600
    service = RollbackService(redis=redis_client, policy=policy, github=github_app, clock=lambda: now)
    service.prs.check_open_pulls()
    # 7 h of reports, but the runner went offline 2 h ago: well for 2 h only
    well_for(redis_client, policy, start=now - 7 * 3600, end=now, broken_at=now - 2 * 3600)
    assert service.sweep()["restoring"] == []
    # a manual pool never restores itself, however well its host is
    manual = parse_policy({**POLICY, "pool": [{**POLICY["pool"][0], "restore": "manual"}]})
    assert RollbackService(redis=redis_client, policy=manual, github=github_app,
                           clock=lambda: now).sweep()["restoring"] == []
    assert not [p for p in github_sim.pulls(REPO) if p.head == "runnerguard/restore/laptop"]


@pytest.mark.parametrize(("pool", "key"), [
    ({"restore": "sometimes"}, "pool.laptop.restore"),
    ({"restore_after": "soon"}, "pool.laptop.restore_after"),
    ({"restore": "auto", "hosts": []}, "pool.laptop.restore"),
])
def test_bad_restore_keys_stop_start_up_naming_the_key(pool: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy({**POLICY, "pool": [{**POLICY["pool"][0], **pool}]})
    assert caught.value.key == key
