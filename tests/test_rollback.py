"""Rollback end to end: signed deliveries -> timeline -> trigger -> one PR in the GitHub simulator, and back."""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient

from config import Policy, parse_policy
from runnerguard.domain import rules
from runnerguard.github import GitHubApp
from runnerguard.queue import tasks as rq_tasks
from runnerguard.store import rollback_state
from tests.github_fixtures import REPO
from tests.helpers import admin_headers, dumps, signed_headers
from tests.test_timings import deliver, job_events

WORKFLOW = """\
# CI for the laptop runner
name: CI
on: [push, pull_request]
jobs:
  build:
    runs-on: [self-hosted, Linux, X64]   # the laptop
    steps:
      - run: cargo build
  lint:
    runs-on: ubuntu-latest
    steps:
      - run: cargo clippy
  test:
    runs-on:
      - self-hosted
      - linux
    steps:
      - run: cargo test
"""
RELEASE = "name: Release\non: push\njobs:\n  publish:\n    runs-on: 'self-hosted'\n    steps: [{run: make}]\n"
FILES = {".github/workflows/ci.yml": WORKFLOW, ".github/workflows/release.yaml": RELEASE, "README.md": "hi\n"}
LABELS = ["self-hosted", "Linux", "X64"]


@pytest.fixture()
def repo_on_sim(github_sim) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    github_sim.add_repo(REPO, FILES)
    return REPO, github_sim.install([REPO])


@pytest.fixture()
def run_all(drain: Callable[..., int], github_app: GitHubApp) -> Callable[..., int]:
    """Drain events, then github, with a runtime whose GitHub App talks to the simulator."""

    def run(policy: Policy | None = None) -> int:
        return drain(("events", "github"), policy, github=github_app, one_queue_at_a_time=True)

    return run


def feed(client: FlaskClient, failures: int, total: int, *, start: int = 1000, repo: str = REPO,
         labels: list[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    now = time.time()
    sent = []
    for n in range(total):
        conclusion = "failure" if n < failures else "success"
        for i, event in enumerate(job_events(start + n, conclusion, created=now - 7200 + n, labels=labels or LABELS,
                                             repo=repo, repo_id=77)):
            guid = f"fb-{start + n}-{i}"
            deliver(client, event, guid)
            sent.append((guid, event))
    return sent


def assert_only_runs_on_changed(before: str, after: str) -> None:
    """Every added line is a runs-on line; every removed line is a runs-on line or an item of its block list."""
    diff = [line for line in difflib.ndiff(before.splitlines(), after.splitlines()) if line[:2] in ("+ ", "- ")]
    assert diff
    for line in diff:
        text = line[2:].strip()
        if line.startswith("+ "):
            assert text.startswith("runs-on:"), line
        else:
            assert text.startswith("runs-on:") or text in ("- self-hosted", "- linux"), line


def test_13_of_21_failing_opens_exactly_one_pr_touching_only_runs_on(client, github_sim, repo_on_sim, run_all, redis_client) -> None:  # type: ignore[no-untyped-def]
    feed(client, failures=13, total=21)
    run_all()
    pulls = github_sim.pulls(REPO)
    assert len(pulls) == 1
    pr = pulls[0]
    assert pr.title == "Roll back self-hosted to ubuntu-latest: 62% of 21 jobs failed in 24h"
    assert pr.head == "runnerguard/rollback/self-hosted" and pr.base == "main"
    assert "13" in (pr.body or "") and "How to restore" in (pr.body or "")
    assert github_sim.labels(REPO, pr.number) == ["runnerguard:rollback"]
    ci = github_sim.file_text(REPO, ".github/workflows/ci.yml", "runnerguard/rollback/self-hosted")
    assert yaml.safe_load(ci)["jobs"]["build"]["runs-on"] == "ubuntu-latest"
    assert yaml.safe_load(ci)["jobs"]["test"]["runs-on"] == "ubuntu-latest"
    assert yaml.safe_load(ci)["jobs"]["lint"]["runs-on"] == "ubuntu-latest"
    assert "# CI for the laptop runner" in ci and "# the laptop" in ci
    assert_only_runs_on_changed(WORKFLOW, ci)
    release = github_sim.file_text(REPO, ".github/workflows/release.yaml", "runnerguard/rollback/self-hosted")
    assert release == RELEASE.replace("'self-hosted'", "'ubuntu-latest'")
    assert github_sim.file_text(REPO, ".github/workflows/ci.yml", "main") == WORKFLOW  # never the default branch
    state = rollback_state.load(redis_client, "self-hosted", REPO)
    assert (state.state, state.pr_number, state.trigger) == ("pr_open", pr.number, "failure_rate")
    listed = client.get("/api/rollbacks", headers=admin_headers()).get_json()
    row = listed["rollbacks"][0]
    assert (row["pool"], row["repo"], row["state"], row["pr_number"]) == ("self-hosted", REPO, "pr_open", pr.number)
    assert row["pr_url"].endswith(f"/pull/{pr.number}") and row["trigger"] == "failure_rate"
    assert set(row) >= {"reason", "opened_at", "updated_at"}


def test_2_of_10_failing_opens_nothing(client, github_sim, repo_on_sim, run_all) -> None:  # type: ignore[no-untyped-def]
    feed(client, failures=2, total=10)
    run_all()
    assert github_sim.pulls(REPO) == []


def test_replaying_every_delivery_opens_no_second_pr(client, github_sim, repo_on_sim, run_all) -> None:  # type: ignore[no-untyped-def]
    feed(client, failures=13, total=21)
    run_all()
    replayed = client.post("/api/replays", json={}, headers=admin_headers())
    assert replayed.status_code == 202
    run_all()
    run_all()
    assert len(github_sim.pulls(REPO)) == 1
    assert len(github_sim.comments(REPO, github_sim.pulls(REPO)[0].number)) <= 1


def test_github_failing_delays_the_pr_but_never_duplicates_it(client, github_sim, repo_on_sim, run_all) -> None:  # type: ignore[no-untyped-def]
    feed(client, failures=13, total=21)
    github_sim.fail_next(2, 502)
    github_sim.fail_next(1, "secondary")
    github_sim.fail_next(1, 503, match="/pulls")
    run_all()
    assert len(github_sim.pulls(REPO)) == 1


def test_a_lost_pr_answer_is_found_again_not_duplicated(client, github_sim, repo_on_sim, run_all, redis_client, github_app) -> None:  # type: ignore[no-untyped-def]
    feed(client, failures=13, total=21)
    # A previous attempt created the branch and the PR, but its answer was lost (a 502 after GitHub acted):
    # runnerguard's state does not know the PR.
    gh = github_app.installation(repo_on_sim[1])
    main = gh.get_branch_sha(REPO, "main")
    gh.create_ref(REPO, "refs/heads/runnerguard/rollback/self-hosted", main)
    gh.commit_files(REPO, branch="runnerguard/rollback/self-hosted", message="earlier attempt",
                    files={".github/workflows/ci.yml": WORKFLOW.replace("[self-hosted, Linux, X64]", "ubuntu-latest")})
    earlier = gh.create_pull(REPO, title="earlier", head="runnerguard/rollback/self-hosted", base="main")
    run_all()
    assert [p.number for p in github_sim.pulls(REPO)] == [earlier.number]
    state = rollback_state.load(redis_client, "self-hosted", REPO)
    assert (state.state, state.pr_number) == ("pr_open", earlier.number)


def test_merge_then_restore_puts_back_exactly_the_rollback(client, github_sim, repo_on_sim, run_all, redis_client, settings, drain) -> None:  # type: ignore[no-untyped-def]
    feed(client, failures=13, total=21)
    run_all()
    pr = github_sim.pulls(REPO)[0]
    github_sim.merge_pull(REPO, pr.number)
    # someone edits the file after the rollback: the restore keeps their edit
    edited = github_sim.file_text(REPO, ".github/workflows/ci.yml", "main").replace("cargo test", "cargo test --all")
    github_sim.push(REPO, {".github/workflows/ci.yml": edited})
    assert [s.state for s in drain.rollbacks().prs.check_open_pulls()] == ["rolled_back"]
    headers = admin_headers()
    response = client.post("/api/rollbacks/self-hosted/restore", json={"repo": REPO}, headers=headers)
    assert response.status_code == 202
    run_all()
    restore = next(p for p in github_sim.pulls(REPO) if p.head == "runnerguard/restore/self-hosted")
    restored = github_sim.file_text(REPO, ".github/workflows/ci.yml", "runnerguard/restore/self-hosted")
    assert restored == WORKFLOW.replace("cargo test", "cargo test --all")
    assert rollback_state.load(redis_client, "self-hosted", REPO).state == "restoring"
    github_sim.merge_pull(REPO, restore.number)
    drain.rollbacks().prs.check_open_pulls()
    assert rollback_state.load(redis_client, "self-hosted", REPO).state == "healthy"


def test_closed_unmerged_starts_a_cooldown(client, github_sim, repo_on_sim, run_all, redis_client, drain) -> None:  # type: ignore[no-untyped-def]
    feed(client, failures=13, total=21)
    run_all()
    pr = github_sim.pulls(REPO)[0]
    drain.rollbacks().prs.pull_closed("self-hosted", REPO, head_ref=pr.head, merged=False)
    feed(client, failures=5, total=5, start=5000)
    run_all()
    assert len(github_sim.pulls(REPO)) == 1  # no new PR within the cooldown


def test_dry_run_records_the_would_be_pr_without_writing(client, github_sim, repo_on_sim, run_all, redis_client) -> None:  # type: ignore[no-untyped-def]
    feed(client, failures=13, total=21)
    run_all(policy=parse_policy({"rollback": {"dry_run": True}}))
    assert github_sim.pulls(REPO) == []
    state = rollback_state.load(redis_client, "self-hosted", REPO)
    assert state.dry_run and state.state == "blocked" and "dry_run" in (state.reason or "")
    history = rollback_state.history(redis_client, "self-hosted", REPO)
    assert history[-1]["event"] == "dry_run" and history[-1]["title"].startswith("Roll back self-hosted")


def test_missing_workflows_permission_is_a_clear_recorded_error(client, github_sim, repo_on_sim, run_all, redis_client) -> None:  # type: ignore[no-untyped-def]
    github_sim.set_permission(repo_on_sim[1], "workflows", None)
    feed(client, failures=13, total=21)
    run_all()
    assert github_sim.pulls(REPO) == []
    state = rollback_state.load(redis_client, "self-hosted", REPO)
    assert state.error is not None and "workflows" in state.error


def test_trigger_rules_are_pure_and_follow_the_seed() -> None:
    assert rules.failure_rate("p", finished=21, failed=13, window_seconds=86400, threshold=0.5, min_jobs=6).fire
    assert not rules.failure_rate("p", finished=10, failed=2, window_seconds=86400, threshold=0.5, min_jobs=6).fire
    assert not rules.failure_rate("p", finished=1, failed=1, window_seconds=86400, threshold=0.5, min_jobs=6).fire
    assert not rules.failure_rate("p", finished=6, failed=3, window_seconds=86400, threshold=0.5, min_jobs=6).fire
    stuck = rules.stuck_queue("p", waiting_longer=5, started_recently=0, after_seconds=7200, min_jobs=5)
    assert stuck.fire and stuck.reason == "5 jobs queued longer than 2h and none started"
    assert not rules.stuck_queue("p", waiting_longer=5, started_recently=1, after_seconds=7200, min_jobs=5).fire


ADMIN = admin_headers()


def test_manual_rollback_from_the_admin_api(client, github_sim, repo_on_sim, run_all) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/api/rollbacks", json={"pool": "self-hosted", "repo": REPO, "note": "laptop is dead"},
                           headers=ADMIN)
    assert response.status_code == 202 and response.get_json()["state"] == "queued"
    run_all()
    pulls = github_sim.pulls(REPO)
    assert [p.title for p in pulls] == ["Roll back self-hosted to ubuntu-latest: requested by an admin: laptop is dead"]


def test_rollback_api_refuses_bad_input(client, redis_client) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/api/rollbacks", json={"pool": "nope"}, headers=ADMIN).status_code == 400
    assert client.post("/api/rollbacks", json={"pool": "self-hosted", "repo": "../etc"}, headers=ADMIN).status_code == 400
    assert client.post("/api/rollbacks", json=["x"], headers=ADMIN).status_code == 400
    assert client.post("/api/rollbacks", json={"pool": "self-hosted", "note": 5}, headers=ADMIN).status_code == 400
    assert client.post("/api/rollbacks", json={"pool": "self-hosted"}).status_code == 401
    restore = client.post("/api/rollbacks/self-hosted/restore", json={"repo": REPO}, headers=ADMIN)
    assert restore.status_code == 409 and "healthy" in restore.get_json()["error"]
    assert client.post("/api/rollbacks/ghost/restore", json={"repo": REPO}, headers=ADMIN).status_code == 404
    assert client.post("/api/rollbacks/self-hosted/restore", json={}, headers=ADMIN).status_code == 400
    assert rq_tasks.queue("github", redis_client).count == 0


def test_stuck_queue_is_caught_by_the_sweep(client, github_sim, repo_on_sim, run_all, drain) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    for n in range(5):
        queued = job_events(9000 + n, "success", created=now - 3 * 3600, labels=LABELS, repo=REPO, repo_id=77)[0]
        deliver(client, queued, f"stuck-{n}")
    run_all()
    assert github_sim.pulls(REPO) == []  # nothing finished: the failure rate cannot see it
    result = drain.rollbacks().sweep()
    assert result["triggered"] == {"self-hosted": [REPO]}
    run_all()
    assert [p.title for p in github_sim.pulls(REPO)] == [
        "Roll back self-hosted to ubuntu-latest: 5 jobs queued longer than 2h and none started"]


def test_pull_request_events_move_the_state(client, github_sim, repo_on_sim, run_all, redis_client) -> None:  # type: ignore[no-untyped-def]

    feed(client, failures=13, total=21)
    run_all()
    pr = github_sim.pulls(REPO)[0]
    event = {"action": "closed", "repository": {"id": 77, "full_name": REPO},
             "pull_request": {"number": pr.number, "merged": True, "user": {"login": pr.user},
                              "head": {"ref": pr.head, "repo": {"id": 77}}}}
    body = dumps(event)
    assert client.post("/webhooks/github", data=body, headers=signed_headers(body, "pull_request")).status_code == 202
    run_all()
    assert rollback_state.load(redis_client, "self-hosted", REPO).state == "rolled_back"
    history = [h["event"] for h in rollback_state.history(redis_client, "self-hosted", REPO)]
    assert history == ["pr_opened", "merged"]


def test_rollback_cli_lists_opens_and_restores(app, client, github_sim, repo_on_sim, run_all, drain) -> None:  # type: ignore[no-untyped-def]
    runner = app.test_cli_runner()
    assert "every pool is healthy" in runner.invoke(args=["rollback", "list"]).output
    assert runner.invoke(args=["rollback", "open", "ghost"]).exit_code == 2
    opened = runner.invoke(args=["rollback", "open", "self-hosted", "--repo", REPO, "--note", "disk full"])
    assert opened.exit_code == 0 and "queued" in opened.output
    run_all()
    listed = runner.invoke(args=["rollback", "list"])
    assert "pr_open" in listed.output and REPO in listed.output
    pr = github_sim.pulls(REPO)[0]
    github_sim.merge_pull(REPO, pr.number)
    drain.rollbacks().prs.check_open_pulls()
    restored = runner.invoke(args=["rollback", "restore", "self-hosted", "--repo", REPO])
    assert restored.exit_code == 0
    run_all()
    assert any(p.head == "runnerguard/restore/self-hosted" for p in github_sim.pulls(REPO))
    again = runner.invoke(args=["rollback", "restore", "self-hosted", "--repo", REPO])
    assert again.exit_code == 1 and "restoring" in again.output
