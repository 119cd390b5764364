"""Each pool's status line: the state a person must hear about first, in plain words, with the next step."""

from __future__ import annotations

import shlex
from typing import Any

from runnerguard.domain import rules
from runnerguard.domain.pool_status import SETUP_PATH, status_for


def decision(finished: int = 10, failed: int = 0) -> rules.Decision:
    return rules.failure_rate("laptop", finished=finished, failed=failed, window_seconds=86400, threshold=0.5,
                              min_jobs=6)


def state(name: str, repo: str = "octo/app", **extra: Any) -> dict[str, Any]:
    return {"pool": "laptop", "repo": repo, "state": name, "reason": "7 of 10 jobs failed", **extra}


def line(states: list[dict[str, Any]], d: rules.Decision | None = None, *, app: bool = True):  # type: ignore[no-untyped-def]
    return status_for("laptop", d or decision(), states, fallback="ubuntu-latest", app_configured=app,
                      failure_target=0.10)


def test_a_quiet_pool_is_healthy_with_its_rate_and_no_next_step() -> None:
    status = line([], decision(10, 0))
    assert (status.state, status.label, status.tone) == ("healthy", "healthy", "ok")
    assert status.rate == "0% of 10 jobs failed in 24h (threshold 50%)"
    assert not status.next_step and not status.links
    assert line([state("healthy")]).state == "healthy"  # a restored pool's state row says healthy too


def test_failures_under_the_threshold_are_named_without_alarm() -> None:
    status = line([], decision(10, 3))
    assert (status.state, status.tone) == ("some_failures", "warn")
    assert "Below the rollback threshold (50%)" in status.next_step


def test_a_firing_trigger_without_a_rollback_yet_is_failing() -> None:
    status = line([], decision(10, 7))
    assert (status.state, status.label, status.tone) == ("failing", "failing", "bad")
    assert status.rate == "70% of 10 jobs failed in 24h" and "worker's log" in status.next_step


def test_blocked_shows_its_reason_and_sends_to_setup_when_no_app_is_configured() -> None:
    blocked = state("blocked", reason="the GitHub App is not configured (open /setup)")
    status = line([blocked], decision(10, 7), app=False)
    assert (status.state, status.label, status.tone) == ("blocked", "blocked", "bad")
    assert status.reason == "the GitHub App is not configured (open /setup)"
    assert status.links[0].href == SETUP_PATH and "Set up the GitHub App" in status.next_step
    configured = line([state("blocked", reason="no workflow file uses the pool")], app=True)
    assert all(link.href != SETUP_PATH for link in configured.links)
    assert "Fix what the reason says" in configured.next_step


def test_an_open_rollback_pr_links_to_the_pr() -> None:
    status = line([state("pr_open", pr_url="https://github.com/octo/app/pull/7", pr_number=7)])
    assert status.label == "rollback PR open" and "merge the rollback PR" in status.next_step
    assert [(link.text, link.href) for link in status.links] == [("rollback PR #7",
                                                                  "https://github.com/octo/app/pull/7")]
    dry = line([state("pr_open", dry_run=True)])
    assert "Dry run" in dry.next_step and not dry.links


def test_rolled_back_gives_the_restore_command_quoted_for_a_shell() -> None:
    status = line([state("rolled_back", pr_url="https://github.com/octo/app/pull/7", pr_number=7)])
    assert status.label == "rolled back" and "run on ubuntu-latest" in status.next_step
    assert status.command == "flask --app app rollback restore laptop --repo octo/app"
    hostile = line([state("rolled_back", repo="octo/app; rm -rf ~")])
    assert shlex.split(hostile.command)[-1] == "octo/app; rm -rf ~"  # one argument, never a second command


def test_restoring_links_to_the_restore_pr() -> None:
    status = line([state("restoring", restore_pr_url="https://github.com/octo/app/pull/9", restore_pr_number=9)])
    assert (status.label, status.tone) == ("restoring", "warn")
    assert status.links[-1].text == "restore PR #9" and "Merge the restore PR" in status.next_step


def test_the_most_urgent_state_of_several_repositories_is_shown_with_the_count_of_the_others() -> None:
    status = line([state("rolled_back", repo="octo/a"), state("blocked", repo="octo/b"),
                   state("healthy", repo="octo/c"), state("pr_open", repo="octo/d")])
    assert (status.state, status.repo, status.more_repos) == ("blocked", "octo/b", 2)


def test_a_state_this_version_does_not_know_is_still_shown_with_its_reason() -> None:
    status = line([state("paused_by_admin", reason="maintenance until Friday")])
    assert (status.label, status.reason, status.tone) == ("paused by admin", "maintenance until Friday", "bad")
