"""The github-issue notifier against the GitHub simulator: one issue per outage, never two, hourly comments, a 403
named by its permission."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from config import parse_policy
from config.notify_env import NotifyConfig, load_notify
from devtools.github_simulator import SimulatorServer
from runnerguard.domain.notices import Notice
from runnerguard.github import GitHubApp, Unavailable
from runnerguard.services import notify_delivery
from runnerguard.services.outage_issues import IssueRefused
from runnerguard.store import notices, notify_state
from tests.github_fixtures import REPO

OPS = "octo-org/ops"


@pytest.fixture()
def ops_repo(github_sim: SimulatorServer) -> int:
    github_sim.add_repo(OPS, {"README.md": "ops\n"})
    return github_sim.install([OPS])


@pytest.fixture()
def config() -> NotifyConfig:
    policy = parse_policy({"notify": [{"kind": "github-issue", "name": "issues", "repo": OPS}]})
    return load_notify(policy.notifiers, {})


def notice(event: str = "rollback", state: str = "pr_open", *, at: float | None = None, resolved: bool = False,
           reason: str = "62% of 21 jobs failed in 24h") -> Notice:
    return Notice(event=event, state=state, pool="gpu", repo=REPO, at=at or time.time(), resolved=resolved,
                  summary=f"{event} happened", evidence={"reason": reason, "failed": 13, "window_seconds": 86400})


def send(client: redis.Redis, config: NotifyConfig, github: GitHubApp, n: Notice, *, now: float | None = None) -> str:
    entry = notices.append(client, n)
    return notify_delivery.deliver(client, config, github, entry, "issues", now=now or n.at)


def outage_issues(github_sim: SimulatorServer) -> list[object]:
    return [i for i in github_sim.issues(OPS) if "runnerguard:outage" in github_sim.labels(OPS, i.number)]


def test_comments_come_at_most_hourly_and_the_summary_lists_everything(  # type: ignore[no-untyped-def]
        redis_client, github_sim, github_app, ops_repo, config) -> None:
    t0 = time.time()
    assert send(redis_client, config, github_app, notice(at=t0)).startswith("opened issue #")
    [issue] = outage_issues(github_sim)
    assert send(redis_client, config, github_app, notice("watchdog", "cancelled", at=t0 + 600)).startswith("noted")
    assert github_sim.comments(OPS, issue.number) == []
    assert send(redis_client, config, github_app, notice("restore", "restoring", at=t0 + 4000)).startswith("commented")
    assert send(redis_client, config, github_app, notice("blocked", "blocked", at=t0 + 4100)).startswith("noted")
    assert len(github_sim.comments(OPS, issue.number)) == 1
    assert send(redis_client, config, github_app, notice("healthy", "healthy", at=t0 + 7200, resolved=True)) == \
        f"closed issue #{issue.number}"
    summary = github_sim.comments(OPS, issue.number)[-1]
    assert "| 2 h 0 min |" in summary
    for words in ("rollback pull request", "watchdog cancelled", "restore pull request", "could not roll back",
                  "healthy again"):
        assert words in summary, words
    assert github_sim.issue(OPS, issue.number).state == "closed"


def test_a_lost_redis_record_finds_the_open_issue_again(  # type: ignore[no-untyped-def]
        redis_client, github_sim, github_app, ops_repo, config) -> None:
    github_sim.add_issue(OPS, "runnerguard: pool gpu is down (someone else's)", labels=["runnerguard:outage"],
                         body="<!-- runnerguard:outage pool=gpu -->", user="mallory")  # not the App's: ignored
    send(redis_client, config, github_app, notice())
    ours = [i for i in outage_issues(github_sim) if i.user.endswith("[bot]")]
    assert len(ours) == 1
    redis_client.flushall()  # a restart that lost Redis: cooldown, open outage and the issue record are gone
    assert send(redis_client, config, github_app, notice("blocked", "blocked")) == \
        f"noted on issue #{ours[0].number} (commented less than an hour ago)"
    assert [i.number for i in outage_issues(github_sim) if i.user.endswith("[bot]")] == [ours[0].number]
    redis_client.flushall()  # and again: the pool's healthy notice still closes the issue it finds on GitHub
    assert send(redis_client, config, github_app, notice("healthy", "healthy", resolved=True)) == \
        f"closed issue #{ours[0].number}"
    assert github_sim.issue(OPS, ours[0].number).state == "closed"
    assert github_sim.issue(OPS, 1).state == "open"  # mallory's issue is not ours to close
    assert send(redis_client, config, github_app, notice("healthy", "healthy", resolved=True)) == \
        "nothing (no outage issue is open)"


def test_a_create_whose_answer_was_lost_is_found_not_sent_twice(  # type: ignore[no-untyped-def]
        redis_client, github_sim, app_factory: Callable[..., GitHubApp], ops_repo, config) -> None:
    github = app_factory(timeout=(2.0, 0.3))
    github.for_repo(OPS)  # the token first, so the lost answer is the issue's
    github_sim.slow_next(1, 0.0, match=f"/repos/{OPS}/issues")  # the look-up first (answered as usual),
    github_sim.fail_next(1, "lost", match=f"/repos/{OPS}/issues")  # then the create: done, its answer lost
    n = notice()
    entry = notices.append(redis_client, n)
    with pytest.raises(Unavailable):
        notify_delivery.deliver(redis_client, config, github, entry, "issues", now=n.at)
    assert len(outage_issues(github_sim)) == 1  # GitHub did make it
    assert notify_state.status(redis_client, "issues")["last_result"] == "error"
    time.sleep(0.7)  # the simulator's lost answer is out of the way
    # RQ's retry of the same task: the claim knows the notice, the issue is found on GitHub, not created again.
    assert notify_delivery.deliver(redis_client, config, github, entry, "issues", now=n.at) == \
        f"noted on issue #{outage_issues(github_sim)[0].number} (commented less than an hour ago)"
    assert len(outage_issues(github_sim)) == 1


def test_a_missing_issues_permission_is_recorded_by_name(  # type: ignore[no-untyped-def]
        redis_client, github_sim, github_app, ops_repo, config) -> None:
    github_sim.set_permission(ops_repo, "issues", None)
    with pytest.raises(IssueRefused, match="lacks the `issues` permission"):
        send(redis_client, config, github_app, notice())
    status = notify_state.status(redis_client, "issues")
    assert status["last_result"] == "error" and "`issues` permission" in status["last_error"]
    assert outage_issues(github_sim) == []


def test_a_repository_the_app_cannot_see_is_a_clear_error(  # type: ignore[no-untyped-def]
        redis_client, github_sim, github_app, config) -> None:
    with pytest.raises(IssueRefused, match="not installed on octo-org/ops"):
        send(redis_client, config, github_app, notice())
    with pytest.raises(IssueRefused, match="not configured"):
        send(redis_client, config, None, notice("blocked", "blocked"))  # type: ignore[arg-type]


def test_a_payload_quoting_another_pools_marker_does_not_make_its_issue_match(  # type: ignore[no-untyped-def]
        redis_client, github_sim, github_app, ops_repo, config) -> None:
    hostile = notice(reason="<!-- runnerguard:outage pool=prod -->\n")
    send(redis_client, config, github_app, hostile)
    [gpu] = outage_issues(github_sim)
    assert "runnerguard:outage pool=prod" in (gpu.body or "")  # quoted, in a code span
    redis_client.flushall()
    prod = Notice(event="rollback", state="pr_open", pool="prod", repo=REPO, at=time.time(), summary="prod fails")
    assert send(redis_client, config, github_app, prod).startswith("opened issue #")
    assert len(outage_issues(github_sim)) == 2


def test_an_issue_a_person_closed_is_not_reused_for_the_next_outage(  # type: ignore[no-untyped-def]
        redis_client, github_sim, github_app, ops_repo, config) -> None:
    send(redis_client, config, github_app, notice())
    [first] = outage_issues(github_sim)
    github_app.for_repo(OPS).update_issue(OPS, first.number, state="closed")  # by hand, on GitHub
    assert send(redis_client, config, github_app, notice("blocked", "blocked")) == f"opened issue #{first.number + 1}"
    assert [i.state for i in outage_issues(github_sim)] == ["closed", "open"]
