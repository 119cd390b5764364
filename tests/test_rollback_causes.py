"""Issue #14 on the simulator: causes decide what counts, fork PRs and fork runs change nothing, blocks are visible."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from config import parse_policy
from devtools.github_simulator.actions import annotation, step
from runnerguard.domain.notices import BLOCKED
from runnerguard.github import GitHubApp
from runnerguard.store import causes, jobstore, rollback_state, watchdog
from runnerguard.store import notices as notice_store
from tests.github_fixtures import REPO
from tests.helpers import admin_headers, dumps, signed_headers
from tests.test_rollback import FILES, LABELS, feed
from tests.test_timings import deliver

TESTS_FAIL = [step(1, "Set up job"), step(2, "Run tests", "completed", "failure"), step(3, "Complete job")]
TESTS_PASS = [step(1, "Set up job"), step(2, "Run tests"), step(3, "Complete job")]
SETUP_FAILS = [step(1, "Set up job", "completed", "failure")]
LOST = ("The self-hosted runner: laptop-1 lost communication with the server. Verify the machine is running and has "
        "a healthy network connection. Anything in your workflow that terminates the runner process, starves it for "
        "CPU/Memory, or blocks its network access can cause this error.")
POOL = "self-hosted"


@pytest.fixture()
def repo_on_sim(github_sim) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    github_sim.add_repo(REPO, FILES)
    return REPO, github_sim.install([REPO])


@pytest.fixture()
def run_all(drain, github_app: GitHubApp):  # type: ignore[no-untyped-def]
    """Drain events, then github, with a GitHub App that talks to the simulator."""
    return lambda policy=None: drain(("events", "github"), policy, github=github_app, one_queue_at_a_time=True)


def send(client: FlaskClient, github_sim: Any, job_id: int, guid: str | None = None) -> dict[str, Any]:
    payload = github_sim.workflow_job_payload(REPO, job_id, "completed")
    deliver(client, payload, guid or f"c-{job_id}")
    return payload


def pool_job(github_sim: Any, run_id: int, conclusion: str, steps: list[dict[str, Any]], *,
             name: str = "test (self-hosted)") -> int:
    return github_sim.add_job(REPO, run_id=run_id, name=name, labels=LABELS, status="completed",
                              conclusion=conclusion, runner_name="laptop-1", steps=steps).id


def jobs_of_pool(client: FlaskClient) -> list[dict[str, Any]]:
    return client.get(f"/api/jobs?pool={POOL}", headers=admin_headers()).get_json()["jobs"]


def pool_row(client: FlaskClient) -> dict[str, Any]:
    return next(p for p in client.get("/api/pools", headers=admin_headers()).get_json()["pools"] if p["name"] == POOL)


def calls(github_sim: Any, pattern: str) -> int:
    return sum(1 for r in github_sim.requests if re.search(pattern, r.path))


def test_13_of_21_failing_at_run_tests_with_hosted_twins_is_code_and_opens_no_pr(  # type: ignore[no-untyped-def]
        client, github_sim, repo_on_sim, run_all, redis_client) -> None:
    twins = []
    for n in range(21):
        run = github_sim.add_run(REPO, head_sha=f"{n + 1:040x}")
        failed = n < 13
        send(client, github_sim, pool_job(github_sim, run.id, "failure" if failed else "success",
                                          TESTS_FAIL if failed else TESTS_PASS))
        if failed:  # the matrix leg on a hosted runner, same commit, same step
            twins.append(github_sim.add_job(REPO, run_id=run.id, name="test (ubuntu-latest)", labels=["ubuntu-latest"],
                                            status="completed", conclusion="failure", runner_name="GitHub Actions 2",
                                            steps=TESTS_FAIL).id)
    for twin in twins[:6]:
        send(client, github_sim, twin)
    run_all()
    assert sorted(j["failure_cause"] or "-" for j in jobs_of_pool(client)).count("unknown") == 7
    for twin in twins[6:]:  # twins completing after their pool job's cause was computed update it, once
        send(client, github_sim, twin)
    run_all()
    assert github_sim.pulls(REPO) == []
    failed = [j for j in jobs_of_pool(client) if j["conclusion"] == "failure"]
    assert len(failed) == 13 and {j["failure_cause"] for j in failed} == {"code"}
    assert {j["failure_evidence"] for j in failed} == {
        "step 'Run tests' also failed on ubuntu-latest at the same commit"}
    row = pool_row(client)
    assert row["failed_by_cause"] == {"runner": 0, "code": 13, "timeout": 0, "unknown": 0}
    assert (row["finished_24h"], row["failed_24h"]) == (21, 0)
    assert causes.top_failing_steps(redis_client, POOL, time.time() - 86400, 3) == [("Run tests", 13)]
    assert calls(github_sim, r"/check-runs/\d+/annotations$") == 13  # the pool's failed jobs, once each
    assert client.post("/api/replays", json={}, headers=admin_headers()).status_code == 202
    run_all()
    run_all()
    assert {j["failure_cause"] for j in jobs_of_pool(client) if j["conclusion"] == "failure"} == {"code"}
    assert calls(github_sim, r"/check-runs/\d+/annotations$") == 13  # cached: a replay asks GitHub nothing again
    assert github_sim.pulls(REPO) == []


def test_7_of_12_lost_by_the_runner_open_one_pr_that_says_so(  # type: ignore[no-untyped-def]
        client, github_sim, repo_on_sim, run_all, redis_client) -> None:
    run = github_sim.add_run(REPO)
    for n in range(12):
        if n < 4:
            job = pool_job(github_sim, run.id, "failure", [step(1, "Set up job"), step(2, "Run tests", "in_progress",
                                                                                       None)])
            github_sim.add_annotations(REPO, job, [annotation(LOST)])
        elif n < 7:
            job = pool_job(github_sim, run.id, "failure", SETUP_FAILS)
        else:
            job = pool_job(github_sim, run.id, "success", TESTS_PASS)
        send(client, github_sim, job)
    run_all()
    pulls = github_sim.pulls(REPO)
    assert len(pulls) == 1
    body = pulls[0].body or ""
    assert "7 of 7 failures were the runner's: lost communication 4, set-up 3." in body
    assert "| job | workflow | runner | conclusion | cause | completed |" in body
    assert "runner: runner laptop-1 lost communication with the server" in body
    assert "runner: the runner's step 'Set up job' failed on laptop-1" in body
    row = pool_row(client)
    assert row["failed_by_cause"] == {"runner": 7, "code": 0, "timeout": 0, "unknown": 0}
    state = rollback_state.load(redis_client, POOL, REPO)
    assert state.state == "pr_open" and state.pr_author == pulls[0].user


def closed_event(number: int, *, repo_id: int, head_repo_id: int | None, author: str, merged: bool = True,
                 head: str = "runnerguard/rollback/self-hosted") -> dict[str, Any]:
    return {"action": "closed", "repository": {"id": repo_id, "full_name": REPO},
            "pull_request": {"number": number, "merged": merged, "user": {"login": author},
                             "head": {"ref": head, "repo": {"id": head_repo_id} if head_repo_id else None}}}


def post_pull_request(client: FlaskClient, event: dict[str, Any]) -> None:
    body = dumps(event)
    assert client.post("/webhooks/github", data=body, headers=signed_headers(body, "pull_request")).status_code == 202


def test_a_forks_pull_request_changes_no_state(client, github_sim, repo_on_sim, run_all, redis_client) -> None:  # type: ignore[no-untyped-def]
    feed(client, failures=13, total=21)
    run_all()
    pr = github_sim.pulls(REPO)[0]
    repo_id = 77  # the repository id the deliveries carry (tests/test_rollback.feed)
    hostile = [
        closed_event(999, repo_id=repo_id, head_repo_id=4242, author="mallory"),  # mallory/ColdVox:runnerguard/...
        closed_event(pr.number, repo_id=repo_id, head_repo_id=4242, author=pr.user),  # the number, from a fork
        closed_event(pr.number, repo_id=repo_id, head_repo_id=None, author=pr.user),  # a deleted fork
        closed_event(pr.number, repo_id=repo_id, head_repo_id=repo_id, author="mallory"),  # not the App's bot
        closed_event(999, repo_id=repo_id, head_repo_id=repo_id, author=pr.user),  # not the recorded PR
    ]
    for event in hostile:
        post_pull_request(client, event)
    run_all()
    state = rollback_state.load(redis_client, POOL, REPO)
    assert (state.state, state.pr_number) == ("pr_open", pr.number)
    assert [h["event"] for h in rollback_state.history(redis_client, POOL, REPO)] == ["pr_opened"]
    post_pull_request(client, closed_event(pr.number, repo_id=repo_id, head_repo_id=repo_id, author=pr.user))
    run_all()
    assert rollback_state.load(redis_client, POOL, REPO).state == "rolled_back"
    restore = client.post(f"/api/rollbacks/{POOL}/restore", json={"repo": REPO}, headers=admin_headers())
    assert restore.status_code == 202  # the real rollback can still be restored


def test_jobs_of_runs_from_forks_do_not_count(client, github_sim, repo_on_sim, run_all) -> None:  # type: ignore[no-untyped-def]
    for n in range(5):  # 10 failing jobs in 5 runs of mallory's fork
        run = github_sim.add_run(REPO, event="pull_request", head_repository="mallory/hello-world",
                                 head_sha=f"{n + 1:040x}")
        for _ in range(2):
            send(client, github_sim, pool_job(github_sim, run.id, "failure", TESTS_FAIL))
    own = github_sim.add_run(REPO)
    for _ in range(2):
        send(client, github_sim, pool_job(github_sim, own.id, "success", TESTS_PASS))
    run_all()
    assert github_sim.pulls(REPO) == []
    row = pool_row(client)
    assert (row["finished_24h"], row["failed_24h"]) == (2, 0)
    assert calls(github_sim, r"/actions/runs/\d+$") == 6  # once per run, not per job


def test_a_workflow_name_can_neither_mention_nor_link_in_the_pr(  # type: ignore[no-untyped-def]
        client, github_sim, repo_on_sim, run_all) -> None:
    run = github_sim.add_run(REPO, workflow_name="CI @octocat https://evil.example/2")
    for _ in range(6):
        job = github_sim.add_job(REPO, run_id=run.id, name="build @octocat", labels=LABELS, status="completed",
                                 conclusion="failure", runner_name="laptop-1 @team", steps=SETUP_FAILS).id
        send(client, github_sim, job)
    run_all()
    [pr] = github_sim.pulls(REPO)
    text = (pr.title or "") + (pr.body or "")
    assert "@octocat" not in text and "@team" not in text and "https://evil.example" not in text
    assert "CI @\u2060octocat https:\u2060//evil.example/2" in (pr.body or "")


def metric(client: FlaskClient, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True)):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def test_a_trigger_without_an_app_is_blocked_visibly_and_acts_once_the_app_is_set_up(  # type: ignore[no-untyped-def]
        app, client, github_sim, repo_on_sim, drain, run_all, redis_client) -> None:
    feed(client, failures=6, total=8)
    drain()  # no GitHub App configured
    [row] = client.get("/api/rollbacks", headers=admin_headers()).get_json()["rollbacks"]
    assert (row["state"], row["reason"]) == ("blocked", "the GitHub App is not configured (open /setup)")
    listed = app.test_cli_runner().invoke(args=["rollback", "list"]).output
    assert ("self-hosted: failing, 75% of 8 jobs in 24h; rollback blocked: the GitHub App is not configured "
            "(open /setup)") in listed
    assert metric(client, "runnerguard_rollback_state", pool=POOL, repo=REPO, state="blocked") == 1
    assert metric(client, "runnerguard_rollback_state", pool=POOL, repo=REPO, state="healthy") == 0
    drain.rollbacks().sweep()
    drain()
    blocked = [n for _, n in notice_store.since(redis_client) if n.event == BLOCKED]
    assert len(blocked) == 1 and "rollback blocked" in blocked[0].summary  # told once, not at every sweep
    run_all()  # now with the App
    assert github_sim.pulls(REPO) == []  # nothing new arrived: the sweep is what acts again
    drain.rollbacks().sweep()
    run_all()
    assert len(github_sim.pulls(REPO)) == 1
    assert rollback_state.load(redis_client, POOL, REPO).state == "pr_open"
    assert metric(client, "runnerguard_rollback_state", pool=POOL, repo=REPO, state="blocked") == 0


def test_a_repo_without_the_app_installed_is_blocked(client, github_sim, run_all, redis_client) -> None:  # type: ignore[no-untyped-def]
    github_sim.add_repo(REPO, {".github/workflows/ci.yml": "on: push\njobs: {}\n"})  # not installed
    feed(client, failures=6, total=8)
    run_all()
    state = rollback_state.load(redis_client, POOL, REPO)
    assert (state.state, state.reason) == ("blocked", f"the GitHub App is not installed on {REPO}")


def test_no_workflow_file_and_dry_run_are_blocks(client, github_sim, run_all, redis_client) -> None:  # type: ignore[no-untyped-def]
    github_sim.add_repo(REPO, {"README.md": "hi\n"})
    github_sim.install([REPO])
    feed(client, failures=6, total=8)
    run_all()
    state = rollback_state.load(redis_client, POOL, REPO)
    assert state.state == "blocked" and "no workflow file" in (state.reason or "")
    github_sim.push(REPO, {".github/workflows/ci.yml": "on: push\njobs:\n  b:\n    runs-on: self-hosted\n"})
    feed(client, failures=1, total=1, start=3000)
    run_all(parse_policy({"rollback": {"dry_run": True}}))
    state = rollback_state.load(redis_client, POOL, REPO)
    assert state.state == "blocked" and "dry_run" in (state.reason or "") and github_sim.pulls(REPO) == []


def test_a_job_the_watchdog_cancelled_is_a_counted_timeout(client, github_sim, repo_on_sim, run_all, redis_client) -> None:  # type: ignore[no-untyped-def]
    run = github_sim.add_run(REPO)
    job = pool_job(github_sim, run.id, "cancelled", [step(1, "Set up job"), step(2, "Run tests", "completed",
                                                                               "cancelled")])
    payload = github_sim.workflow_job_payload(REPO, job, "completed")
    watchdog.claim(redis_client, payload["repository"]["id"], job, "cancelled_at", at=time.time(),
                   reason="its max_run of 2h")
    send(client, github_sim, job)
    run_all()
    [record] = jobs_of_pool(client)
    assert record["failure_cause"] == "timeout"
    assert record["failure_evidence"] == "cancelled by runnerguard's watchdog after its max_run of 2h"
    assert (pool_row(client)["finished_24h"], pool_row(client)["failed_24h"]) == (1, 1)


def test_a_persons_cancel_counts_neither_way(client, github_sim, repo_on_sim, run_all) -> None:  # type: ignore[no-untyped-def]
    run = github_sim.add_run(REPO)
    send(client, github_sim, pool_job(github_sim, run.id, "cancelled",
                                      [step(1, "Set up job"), step(2, "Run tests", "completed", "cancelled")]))
    run_all()
    assert (pool_row(client)["finished_24h"], pool_row(client)["failed_24h"]) == (0, 0)
    assert pool_row(client)["failed_by_cause"] == {"runner": 0, "code": 0, "timeout": 0, "unknown": 0}


def test_a_rate_limit_leaves_no_cause_cached_and_a_replay_finds_it(  # type: ignore[no-untyped-def]
        client, github_sim, repo_on_sim, run_all, redis_client, fake_clock) -> None:
    run = github_sim.add_run(REPO)
    job = pool_job(github_sim, run.id, "failure", TESTS_FAIL)
    github_sim.add_annotations(REPO, job, [annotation(LOST)])
    github_sim.fail_next(1, "primary", match="/annotations", reset_in=7200)
    payload = send(client, github_sim, job, "rl-1")
    run_all()
    repo_id = payload["repository"]["id"]
    assert causes.load(redis_client, repo_id, job) is None and causes.cached_annotations(redis_client, repo_id, job) \
        is None
    delivery = client.get("/api/deliveries/rl-1", headers=admin_headers()).get_json()
    assert "RateLimited" in delivery["errors"]["causes"]
    fake_clock.advance(7300)  # the limit resets
    assert client.post("/api/deliveries/rl-1/replay", headers=admin_headers()).status_code == 202
    run_all()
    [record] = jobstore.load(redis_client, [f"{repo_id}:{job}"])
    assert record["failure_cause"] == "runner" and "lost communication" in record["failure_evidence"]


def test_a_cause_task_before_its_timeline_is_retried_not_guessed(  # type: ignore[no-untyped-def]
        client, github_sim, repo_on_sim, drain, redis_client) -> None:
    run = github_sim.add_run(REPO)
    job = pool_job(github_sim, run.id, "failure", SETUP_FAILS)
    payload = send(client, github_sim, job, "early-1")
    drain(("github",))  # the cause task first: the job's record is not written yet
    delivery = client.get("/api/deliveries/early-1", headers=admin_headers()).get_json()
    assert "not written yet" in delivery["errors"]["causes"]
    assert causes.load(redis_client, payload["repository"]["id"], job) is None


def test_count_forks_true_counts_them(client, github_sim, repo_on_sim, run_all) -> None:  # type: ignore[no-untyped-def]
    run = github_sim.add_run(REPO, event="pull_request", head_repository="mallory/hello-world")
    for _ in range(6):
        send(client, github_sim, pool_job(github_sim, run.id, "failure", SETUP_FAILS))
    run_all(parse_policy({"rollback": {"failure_rate": {"count_forks": True}}}))
    assert len(github_sim.pulls(REPO)) == 1
    assert calls(github_sim, r"/actions/runs/\d+$") == 0  # nothing to ask GitHub when forks count
