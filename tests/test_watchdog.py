"""The job watchdog against the GitHub simulator over HTTP and a real Redis: timeouts, stranded jobs, one rerun.

Failure causes come from the attribution (issue #14), which puts `failure_cause` on every job record. Until it
lands, these tests hand the watchdog its causes through its one seam, `Watchdog.cause_of` (a function of the job
record), reading a dict the test fills: the same value the record will carry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask import Flask

from app import create_app
from config import ConfigError, Policy, Settings
from config.policy import parse_policy
from devtools.github_simulator import SimulatorServer
from devtools.github_simulator.repos import SimJob
from runnerguard.domain.events import WorkflowJobEvent
from runnerguard.domain.pools import pools_for
from runnerguard.github import GitHubApp
from runnerguard.queue import tasks
from runnerguard.services.watchdog import Watchdog
from runnerguard.store import jobstore, metrics, notices, rollback_state
from runnerguard.store import watchdog as store
from runnerguard.web import dashboard_data
from tests.github_fixtures import REPO, FakeClock
from tests.helpers import admin_headers
from tests.test_dashboard import login
from tests.test_timings import deliver

LAPTOP = ["self-hosted", "laptop"]
HOUR = 3600
RETENTION = 30 * 86400


def policy(**pool: object) -> Policy:
    return parse_policy({"pool": [{"name": "laptop", "labels": LAPTOP, "max_run": "90m", **pool},
                                  {"name": "gpu", "labels": ["self-hosted", "gpu"]}]})


def seen(client: redis.Redis, sim: SimulatorServer, job: SimJob, action: str, policy_: Policy, at: float) -> None:
    """The job's delivery of `action` recorded as the timings task records it (the simulator's real payload)."""
    event = WorkflowJobEvent.parse(sim.workflow_job_payload(REPO, job.id, action))
    jobstore.upsert(client, event.snapshot(), seen_at=at, pools=pools_for(event.labels, policy_.pools),
                    rule=policy_.rollback.failure_rate.counting, retention_seconds=RETENTION, now=at)


def record(client: redis.Redis, sim: SimulatorServer, job: SimJob) -> dict[str, Any]:
    (found,) = jobstore.load(client, [f"{sim.repo(REPO).id}:{job.id}"])
    return found


def mark(client: redis.Redis, sim: SimulatorServer, job: SimJob) -> dict[str, Any]:
    return store.load(client, sim.repo(REPO).id, job.id) or {}


def make(client: redis.Redis, app: GitHubApp, policy_: Policy, clock: FakeClock,
         causes: Mapping[int, str] | None = None) -> Watchdog:
    cause_of: Callable[[Mapping[str, Any]], str | None] = lambda r: (causes or {}).get(r["job_id"])  # noqa: E731
    return Watchdog(redis=client, policy=policy_, github=app, retention_seconds=RETENTION, clock=clock,
                    cause_of=cause_of)


def hung(sim: SimulatorServer, clock: FakeClock, *, ran: float = 2 * HOUR, ignores_cancel: bool = False,
         labels: list[str] | None = None) -> SimJob:
    run = sim.add_run(REPO, ignores_cancel=ignores_cancel)
    return sim.add_job(REPO, run_id=run.id, labels=labels or LAPTOP, status="in_progress", runner_name="laptop-1",
                       started_at=clock() - ran)


def watched(notes: list[Any]) -> list[tuple[str, str | None]]:
    return [(n.state, n.pool) for _, n in notes if n.event == "watchdog"]


# --- 1. timeouts ------------------------------------------------------------------------------------------------


def test_a_job_running_2h_on_a_90m_pool_is_cancelled_at_once_and_never_twice(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock) -> None:
    p = policy()
    job = hung(github_sim, fake_clock)
    seen(redis_client, github_sim, job, "in_progress", p, fake_clock() - 2 * HOUR)
    first_seen = fake_clock()
    dog = make(redis_client, github_app, p, fake_clock)
    report = dog.sweep_timeouts()
    assert report.acted == [f"cancel {job.id}"]
    (call,) = github_sim.calls("cancel")
    assert (call.target, call.status) == (job.run_id, 202) and call.at - first_seen <= 120
    state = mark(redis_client, github_sim, job)
    assert state["cancelled_at"] == first_seen and "forced_at" not in state
    assert state["reason"] == "in progress 2 h on pool laptop, over its max_run of 90 min"
    assert metrics.value(redis_client, "runnerguard_watchdog_total", {"pool": "laptop", "action": "cancel"}) == 1
    (notice,) = [n for _, n in notices.since(redis_client)]
    assert (notice.event, notice.state, notice.pool, notice.repo) == ("watchdog", "cancelled", "laptop", REPO)
    assert notice.evidence["job_id"] == job.id and notice.links["job"].startswith("https://")
    for _ in range(3):
        fake_clock.advance(20)
        assert dog.sweep_timeouts().acted == []
    assert len(github_sim.calls("cancel")) == 1
    # The cancel ended the job on GitHub and no webhook came: after force_after it is read back, not forced.
    fake_clock.advance(5 * 60)
    report = dog.sweep_timeouts()
    assert report.acted == [] and report.recorded == [job.id] and github_sim.calls("force-cancel") == []
    ended = record(redis_client, github_sim, job)
    assert (ended["status"], ended["conclusion"], ended["source"]) == ("completed", "cancelled", "rest")
    assert jobstore.running_before(redis_client, "laptop", fake_clock()) == []


def test_a_run_ignoring_cancel_is_force_cancelled_after_force_after_once(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock) -> None:
    p = policy(force_after="5m")
    job = hung(github_sim, fake_clock, ignores_cancel=True)
    seen(redis_client, github_sim, job, "in_progress", p, fake_clock() - 2 * HOUR)
    dog = make(redis_client, github_app, p, fake_clock)
    assert dog.sweep_timeouts().acted == [f"cancel {job.id}"]
    cancelled = fake_clock()
    fake_clock.advance(4 * 60 + 59)
    assert dog.sweep_timeouts().acted == [] and github_sim.calls("force-cancel") == []
    fake_clock.advance(1)
    assert dog.sweep_timeouts().acted == [f"force_cancel {job.id}"]
    state = mark(redis_client, github_sim, job)
    assert state["forced_at"] - cancelled == 300
    for _ in range(3):
        fake_clock.advance(60)
        dog.sweep_timeouts()
    assert [c.status for c in github_sim.calls("force-cancel")] == [202]
    assert [c.status for c in github_sim.calls("cancel")] == [202]
    assert watched(notices.since(redis_client)) == [("cancelled", "laptop"), ("force_cancelled", "laptop")]
    assert metrics.value(redis_client, "runnerguard_watchdog_total",
                         {"pool": "laptop", "action": "force_cancel"}) == 1
    # The forced end reaches the record through the stranded check (no webhook came).
    fake_clock.advance(31 * 60)
    assert dog.find_stranded().recorded == [job.id]
    assert record(redis_client, github_sim, job)["conclusion"] == "cancelled"


def test_two_workers_sweeping_at_once_make_one_cancel(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], app_factory: Callable[..., GitHubApp],
        redis_client: redis.Redis, fake_clock: FakeClock) -> None:
    p = policy()
    jobs = [hung(github_sim, fake_clock) for _ in range(4)]
    for job in jobs:
        seen(redis_client, github_sim, job, "in_progress", p, fake_clock() - 2 * HOUR)
    dogs = [make(redis.Redis(connection_pool=redis_client.connection_pool), app_factory(), p, fake_clock)
            for _ in range(2)]
    barrier = threading.Barrier(2)
    acted: list[list[str]] = []

    def sweep(dog: Watchdog) -> None:
        barrier.wait()
        acted.append(dog.sweep_timeouts().acted)

    threads = [threading.Thread(target=sweep, args=(dog,)) for dog in dogs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(a for acts in acted for a in acts) == sorted(f"cancel {j.id}" for j in jobs)
    assert sorted(c.target for c in github_sim.calls("cancel")) == sorted(j.run_id for j in jobs)


def test_a_lost_cancel_answer_meets_409_and_counts_as_done(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], app_factory: Callable[..., GitHubApp],
        redis_client: redis.Redis, fake_clock: FakeClock) -> None:
    p = policy()
    job = hung(github_sim, fake_clock)
    seen(redis_client, github_sim, job, "in_progress", p, fake_clock() - 2 * HOUR)
    dog = make(redis_client, app_factory(timeout=(1.0, 0.2)), p, fake_clock)
    github_sim.fail_next(1, "lost", match="/cancel")
    assert dog.sweep_timeouts().acted == [f"cancel {job.id}"]
    assert [c.status for c in github_sim.calls("cancel")] == [202, 409]
    assert mark(redis_client, github_sim, job)["cancel_status"] == "409"
    assert notices.since(redis_client) == []  # the run had ended by the time we heard: nobody needs telling
    fake_clock.advance(60)
    dog.sweep_timeouts()
    assert len(github_sim.calls("cancel")) == 2  # the transport's one retry, never another sweep's


def test_an_unanswered_cancel_is_not_repeated_and_the_force_is_the_safety_net(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], app_factory: Callable[..., GitHubApp],
        redis_client: redis.Redis, fake_clock: FakeClock) -> None:
    p = policy()
    job = hung(github_sim, fake_clock)
    seen(redis_client, github_sim, job, "in_progress", p, fake_clock() - 2 * HOUR)
    dog = make(redis_client, app_factory(), p, fake_clock)
    github_sim.fail_next(10, 502, match="/cancel")
    report = dog.sweep_timeouts()
    assert report.acted == [] and report.errors == 1
    assert "cancelled_at" in mark(redis_client, github_sim, job)  # claimed: it may have reached GitHub
    fake_clock.advance(60)
    dog.sweep_timeouts()
    assert all(c.kind == "cancel" for c in github_sim.calls()) and github_sim.calls(accepted=True) == []
    fake_clock.advance(5 * 60)
    assert dog.sweep_timeouts().acted == [f"force_cancel {job.id}"]


def test_a_job_ended_without_its_webhook_is_recorded_not_cancelled(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock) -> None:
    p = policy()
    job = hung(github_sim, fake_clock)
    seen(redis_client, github_sim, job, "in_progress", p, fake_clock() - 2 * HOUR)
    github_sim.finish_job(REPO, job.id, "success")  # GitHub knows it ended; its webhook was lost
    report = make(redis_client, github_app, p, fake_clock).sweep_timeouts()
    assert report.acted == [] and report.recorded == [job.id] and github_sim.calls() == []
    ended = record(redis_client, github_sim, job)
    assert (ended["conclusion"], ended["source"], ended["run_seconds"]) == ("success", "rest", pytest.approx(7200))
    assert store.load(redis_client, github_sim.repo(REPO).id, job.id) is None  # the watchdog never acted on it


def test_jobs_within_max_run_and_pools_without_one_are_left_alone(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock) -> None:
    p = policy()
    young = hung(github_sim, fake_clock, ran=89 * 60)
    gpu = hung(github_sim, fake_clock, ran=20 * HOUR, labels=["self-hosted", "gpu"])
    queued = github_sim.add_job(REPO, labels=LAPTOP)
    for job, action in ((young, "in_progress"), (gpu, "in_progress"), (queued, "queued")):
        seen(redis_client, github_sim, job, action, p, fake_clock() - 20 * HOUR)
    assert make(redis_client, github_app, p, fake_clock).sweep_timeouts().acted == []
    assert github_sim.calls() == []
    assert [r.path for r in github_sim.requests if "/actions/" in r.path] == []  # no call, not even a read


def test_a_403_is_blocked_by_name_released_and_tried_again_once_granted(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock, settings: Settings, tmp_path: Path) -> None:
    p = policy()
    job = hung(github_sim, fake_clock)
    seen(redis_client, github_sim, job, "in_progress", p, fake_clock() - 2 * HOUR)
    github_sim.set_permission(sim_repo[1], "actions", "read")
    dog = make(redis_client, github_app, p, fake_clock)
    assert dog.sweep_timeouts().blocked == [REPO]
    assert "cancelled_at" not in mark(redis_client, github_sim, job)  # GitHub refused: nothing happened
    (blocked,) = store.blocked(redis_client).values()
    assert (blocked["permission"], blocked["action"], blocked["pool"]) == ("actions", "cancel", "laptop")
    assert watched(notices.since(redis_client)) == [("blocked", "laptop")]
    web = api_client(settings, tmp_path, 'max_run = "90m"')
    shown = web.get("/api/watchdog", headers=admin_headers()).get_json()
    laptop = next(row for row in shown["pools"] if row["name"] == "laptop")
    assert laptop["state"] == "blocked" and "`actions` permission" in laptop["reason"]
    fake_clock.advance(60)
    dog.sweep_timeouts()
    assert len(github_sim.calls("cancel")) == 1  # blocked: not hammered every minute
    github_sim.set_permission(sim_repo[1], "actions", "write")
    github_app.tokens = type(github_app.tokens)(clock=fake_clock)  # a new token carries the new permission
    fake_clock.advance(30 * 60)
    assert dog.sweep_timeouts().acted == [f"cancel {job.id}"]
    assert store.blocked(redis_client) == {}
    assert watched(notices.since(redis_client)) == [("blocked", "laptop"), ("cancelled", "laptop")]


def test_a_payload_repo_name_never_reaches_githubs_url(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock) -> None:
    p = policy()
    job = hung(github_sim, fake_clock)
    payload = github_sim.workflow_job_payload(REPO, job.id, "in_progress")
    payload["repository"]["full_name"] = "octo-org/../admin"
    event = WorkflowJobEvent.parse(payload)
    jobstore.upsert(redis_client, event.snapshot(), seen_at=fake_clock(), pools=["laptop"],
                    rule=p.rollback.failure_rate.counting, retention_seconds=RETENTION, now=fake_clock())
    dog = make(redis_client, github_app, p, fake_clock)
    assert dog.sweep_timeouts().skipped == 1
    fake_clock.advance(7 * HOUR)
    assert dog.find_stranded().asked == 0
    assert github_sim.requests == []


# --- 2. stranded jobs -------------------------------------------------------------------------------------------


def test_a_stranded_job_is_completed_from_rest_once(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock) -> None:
    p = policy()
    job = github_sim.add_job(REPO, labels=["self-hosted", "gpu"])  # a pool without max_run: 6 h
    seen(redis_client, github_sim, job, "queued", p, fake_clock())
    dog = make(redis_client, github_app, p, fake_clock)
    fake_clock.advance(5 * HOUR)
    assert dog.find_stranded().candidates == 0
    github_sim.finish_job(REPO, job.id, "cancelled")  # GitHub gave up on it and sent no webhook
    fake_clock.advance(HOUR + 1)
    report = dog.find_stranded()
    assert (report.asked, report.recorded) == (1, [job.id])
    ended = record(redis_client, github_sim, job)
    assert (ended["status"], ended["conclusion"], ended["source"]) == ("completed", "cancelled", "rest")
    assert metrics.value(redis_client, "runnerguard_jobs_total",
                         {"pool": "gpu", "repo": REPO, "conclusion": "cancelled", "cause": "unknown"}) == 1
    for _ in range(3):
        fake_clock.advance(HOUR)
        assert dog.find_stranded().asked == 0
    # The webhook turning up late changes nothing: the same job, counted once, its end as GitHub said.
    seen(redis_client, github_sim, job, "completed", p, fake_clock())
    assert metrics.value(redis_client, "runnerguard_jobs_total",
                         {"pool": "gpu", "repo": REPO, "conclusion": "cancelled", "cause": "unknown"}) == 1
    assert sum(f"/actions/jobs/{job.id}" in r.path for r in github_sim.requests) == 1


def test_a_job_still_open_on_github_is_asked_about_at_most_every_30_minutes(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], app_factory: Callable[..., GitHubApp],
        redis_client: redis.Redis, fake_clock: FakeClock) -> None:
    p = policy()
    job = github_sim.add_job(REPO, labels=LAPTOP)  # max_run 90m: asked about after 90 min without an end
    seen(redis_client, github_sim, job, "queued", p, fake_clock())
    dogs = [make(redis_client, app_factory(), p, fake_clock) for _ in range(2)]
    fake_clock.advance(91 * 60)
    asked = [dog.find_stranded().asked for dog in dogs]
    for _ in range(6):
        fake_clock.advance(5 * 60)
        asked += [dog.find_stranded().asked for dog in dogs]
    assert sum(asked) == 2  # at 91 and at 121 minutes, whichever worker swept
    assert record(redis_client, github_sim, job)["status"] == "queued"


def test_a_lost_start_read_back_puts_the_job_under_the_timeout(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock) -> None:
    p = policy()
    job = github_sim.add_job(REPO, labels=LAPTOP)
    seen(redis_client, github_sim, job, "queued", p, fake_clock())
    # A runner takes it and its in_progress webhook is lost: only GitHub knows.
    github_sim.repo(REPO).jobs[job.id].status = "in_progress"
    github_sim.repo(REPO).jobs[job.id].started_at = fake_clock() + 60
    github_sim.repo(REPO).jobs[job.id].runner_id = 7
    fake_clock.advance(91 * 60)
    dog = make(redis_client, github_app, p, fake_clock)
    assert dog.find_stranded().recorded == [job.id]
    assert record(redis_client, github_sim, job)["status"] == "in_progress"
    fake_clock.advance(60 * 60)
    assert dog.sweep_timeouts().acted == [f"cancel {job.id}"]


def test_a_job_github_no_longer_knows_is_not_asked_about_again(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock) -> None:
    p = policy()
    job = github_sim.add_job(REPO, labels=LAPTOP)
    seen(redis_client, github_sim, job, "queued", p, fake_clock())
    del github_sim.repo(REPO).jobs[job.id]
    fake_clock.advance(2 * HOUR)
    dog = make(redis_client, github_app, p, fake_clock)
    assert dog.find_stranded().gone == [job.id]
    fake_clock.advance(2 * HOUR)
    assert dog.find_stranded().candidates == 0


def test_a_damaged_answer_or_one_about_another_job_is_not_recorded(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock) -> None:
    p = policy()
    job = github_sim.add_job(REPO, labels=LAPTOP)
    seen(redis_client, github_sim, job, "queued", p, fake_clock())
    other = github_sim.add_job(REPO, labels=LAPTOP, status="completed", conclusion="success")
    token = github_app.installation_token(sim_repo[1])
    github_sim.respond_next(200, {"id": "x"}, match=f"/actions/jobs/{job.id}")
    fake_clock.advance(2 * HOUR)
    dog = make(redis_client, github_app, p, fake_clock)
    assert dog.find_stranded().errors == 1
    answer = requests.get(f"{github_sim.url}/repos/{REPO}/actions/jobs/{other.id}",
                          headers={"Authorization": f"token {token}"}, timeout=5).json()
    github_sim.respond_next(200, answer, match=f"/actions/jobs/{job.id}")
    fake_clock.advance(31 * 60)
    report = dog.find_stranded()
    assert (report.asked, report.recorded) == (1, [])
    assert record(redis_client, github_sim, job)["status"] == "queued"


# --- 3. one more try --------------------------------------------------------------------------------------------


def failed(sim: SimulatorServer, client: redis.Redis, p: Policy, clock: FakeClock, *, conclusion: str = "failure",
           labels: list[str] | None = None) -> SimJob:
    job = sim.add_job(REPO, labels=labels or LAPTOP, status="completed", conclusion=conclusion,
                      runner_name="laptop-1", started_at=clock() - 600)
    sim.finish_run(REPO, job.run_id, conclusion)
    for action in ("queued", "in_progress", "completed"):
        seen(client, sim, job, action, p, clock())
    return job


def test_a_runner_lost_job_is_rerun_once_and_a_code_failure_never(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock) -> None:
    p = policy()
    lost = failed(github_sim, redis_client, p, fake_clock)
    code = failed(github_sim, redis_client, p, fake_clock)
    causes = {lost.id: "runner", code.id: "code"}
    dog = make(redis_client, github_app, p, fake_clock, causes)
    assert dog.rerun_runner_failures().acted == [f"rerun {lost.id}"]
    (call,) = github_sim.calls("rerun")
    assert call.target == lost.id and call.new_job_id is not None
    assert github_sim.repo(REPO).jobs[call.new_job_id].run_attempt == 2
    assert "rerun_at" in mark(redis_client, github_sim, lost) and mark(redis_client, github_sim, code) == {}
    assert metrics.value(redis_client, "runnerguard_watchdog_total", {"pool": "laptop", "action": "rerun"}) == 1
    assert watched(notices.since(redis_client)) == [("rerun", "laptop")]
    # A replay storm of the lost job's deliveries, the rerun's own (attempt 2, also lost), more sweeps: no more.
    github_sim.finish_job(REPO, call.new_job_id, "failure")
    github_sim.finish_run(REPO, lost.run_id, "failure")
    again = github_sim.repo(REPO).jobs[call.new_job_id]
    causes[again.id] = "runner"  # type: ignore[index]
    for _ in range(20):
        for action in ("queued", "in_progress", "completed"):
            seen(redis_client, github_sim, lost, action, p, fake_clock())
            seen(redis_client, github_sim, again, action, p, fake_clock())
        fake_clock.advance(30)
        dog.rerun_runner_failures()
    assert record(redis_client, github_sim, again)["run_attempt"] == 2
    assert len(github_sim.calls("rerun")) == 1


def test_two_workers_and_a_restart_rerun_once(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], app_factory: Callable[..., GitHubApp],
        redis_client: redis.Redis, fake_clock: FakeClock) -> None:
    p = policy()
    jobs = [failed(github_sim, redis_client, p, fake_clock) for _ in range(3)]
    causes = {j.id: "runner" for j in jobs}
    barrier = threading.Barrier(2)

    def sweep() -> None:
        dog = make(redis.Redis(connection_pool=redis_client.connection_pool), app_factory(), p, fake_clock, causes)
        barrier.wait()
        dog.rerun_runner_failures()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    make(redis_client, app_factory(), p, fake_clock, causes).rerun_runner_failures()  # "after a restart"
    assert sorted(c.target for c in github_sim.calls("rerun")) == sorted(j.id for j in jobs)


@pytest.mark.parametrize("why", ["retry_off", "failing", "rolled_back", "second_attempt", "gone_by_hand"])
def test_no_rerun_where_the_policy_or_the_pool_says_no(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock, why: str) -> None:
    p = policy(retry_runner_failures=0) if why == "retry_off" else policy()
    lost = failed(github_sim, redis_client, p, fake_clock)
    causes = {lost.id: "runner"}
    if why == "failing":  # 6 failures of 6 in the window: the rollback's own trigger fires
        for _ in range(6):
            failed(github_sim, redis_client, p, fake_clock)
    if why == "rolled_back":
        rollback_state.save(redis_client, rollback_state.RollbackState(pool="laptop", repo=REPO,
                                                                       state=rollback_state.ROLLED_BACK),
                            event="merged", now=fake_clock())
    if why == "second_attempt":
        attempt = github_sim.add_run(REPO, status="completed", conclusion="failure", run_attempt=2)
        second = github_sim.add_job(REPO, run_id=attempt.id, labels=LAPTOP, status="completed",
                                    conclusion="failure", started_at=fake_clock() - 60)
        for action in ("queued", "in_progress", "completed"):
            seen(redis_client, github_sim, second, action, p, fake_clock())
        causes = {lost.id: "code", second.id: "runner"}
    if why == "gone_by_hand":
        github_sim.repo(REPO).runs[lost.run_id].run_attempt = 2  # someone re-ran the run already
    dog = make(redis_client, github_app, p, fake_clock, causes)
    dog.rerun_runner_failures()
    assert github_sim.calls("rerun") == []
    if why in ("retry_off", "failing", "rolled_back", "second_attempt"):
        # decided from the record and the policy alone: GitHub is not even asked about the run
        assert [r.path for r in github_sim.requests if "/actions/" in r.path] == []


def test_a_rerun_waits_for_its_run_to_end_and_a_refused_one_is_not_retried(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock) -> None:
    p = policy()
    lost = failed(github_sim, redis_client, p, fake_clock)
    run = github_sim.repo(REPO).runs[lost.run_id]
    run.status, run.conclusion = "in_progress", None  # another job of the run still runs
    dog = make(redis_client, github_app, p, fake_clock, {lost.id: "runner"})
    assert dog.rerun_runner_failures().acted == [] and github_sim.calls("rerun") == []
    run.status, run.conclusion, run.rerunnable = "completed", "failure", False
    fake_clock.advance(60)
    assert dog.rerun_runner_failures().acted == []
    assert [c.status for c in github_sim.calls("rerun")] == [403]
    assert "cannot be retried" in mark(redis_client, github_sim, lost)["rerun_error"]
    run.rerunnable = True
    fake_clock.advance(60)
    dog.rerun_runner_failures()
    assert len(github_sim.calls("rerun")) == 1


def test_a_rerun_without_actions_write_is_blocked_and_released(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock) -> None:
    p = policy()
    lost = failed(github_sim, redis_client, p, fake_clock)
    github_sim.set_permission(sim_repo[1], "actions", "read")
    dog = make(redis_client, github_app, p, fake_clock, {lost.id: "runner"})
    assert dog.rerun_runner_failures().blocked == [REPO]
    assert "rerun_at" not in mark(redis_client, github_sim, lost)
    assert store.blocked(redis_client)[REPO.lower()]["action"] == "rerun"


# --- policy, API, dashboard, metric -----------------------------------------------------------------------------


@pytest.mark.parametrize(("pool", "key"), [
    ({"max_run": "soon"}, "pool.laptop.max_run"),
    ({"max_run": 0}, "pool.laptop.max_run"),
    ({"max_run": "90m", "force_after": "-5m"}, "pool.laptop.force_after"),
    ({"force_after": True}, "pool.laptop.force_after"),
    ({"retry_runner_failures": 2}, "pool.laptop.retry_runner_failures"),
    ({"retry_runner_failures": True}, "pool.laptop.retry_runner_failures"),
    ({"retry_runner_failures": "1"}, "pool.laptop.retry_runner_failures"),
    ({"max_runs": "1h"}, "pool[0].max_runs"),
])
def test_bad_watchdog_keys_stop_start_up_naming_the_key(pool: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy({"pool": [{"name": "laptop", "labels": LAPTOP, **pool}]})
    assert caught.value.key == key


def test_watchdog_defaults() -> None:
    (laptop,) = parse_policy({"pool": [{"name": "laptop", "labels": LAPTOP}]}).pools
    assert (laptop.max_run_seconds, laptop.force_after_seconds, laptop.retry_runner_failures) == (None, 300, 1)
    (laptop,) = parse_policy({"pool": [{"name": "laptop", "labels": LAPTOP, "max_run": "90m", "force_after": "2m",
                                        "retry_runner_failures": 0}]}).pools
    assert (laptop.max_run_seconds, laptop.force_after_seconds, laptop.retry_runner_failures) == (5400, 120, 0)


def api_client(settings: Settings, tmp_path: Path, extra: str = "") -> Any:
    path = tmp_path / "policy.toml"
    path.write_text(f'[[pool]]\nname = "laptop"\nlabels = ["self-hosted", "laptop"]\n{extra}\n')
    app: Flask = create_app(settings.with_overrides(policy_path=path))
    return app.test_client()


def test_api_dashboard_and_metrics_show_what_the_watchdog_did(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock, settings: Settings, tmp_path: Path) -> None:
    p = policy()
    job = hung(github_sim, fake_clock)
    seen(redis_client, github_sim, job, "in_progress", p, fake_clock() - 2 * HOUR)
    make(redis_client, github_app, p, fake_clock).sweep_timeouts()
    web = api_client(settings, tmp_path, 'max_run = "90m"')
    assert web.get("/api/watchdog").status_code == 401
    shown = web.get("/api/watchdog", headers=admin_headers()).get_json()
    assert shown["pools"] == [{"name": "laptop", "max_run_seconds": 5400, "force_after_seconds": 300,
                               "retry_runner_failures": 1, "state": "watching", "reason": None}]
    assert shown["blocked"] == []
    assert [(r["action"], r["job_id"], r["status"]) for r in shown["recent"]] == [("cancel", job.id, 202)]
    (row,) = web.get("/api/jobs", headers=admin_headers()).get_json()["jobs"]
    assert row["watchdog"]["reason"].startswith("in progress 2 h") and row["watchdog"]["cancelled_at"] > 0
    (latest,) = dashboard_data.latest_jobs(redis_client)
    assert latest["watchdog"].startswith("watchdog: cancelled ") and "max_run of 90 min" in latest["watchdog"]
    login(web)
    page = web.get("/").get_data(as_text=True)
    assert '<small class="muted watchdog">watchdog: cancelled ' in page
    scrape = web.get("/metrics").get_data(as_text=True)
    assert 'runnerguard_watchdog_total{action="cancel",pool="laptop"} 1' in scrape


def test_the_running_and_open_indexes_follow_the_record_in_any_delivery_order(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], redis_client: redis.Redis,
        fake_clock: FakeClock) -> None:
    p = policy()
    job = hung(github_sim, fake_clock)
    payloads = {a: github_sim.workflow_job_payload(REPO, job.id, a) for a in ("queued", "in_progress")}
    github_sim.finish_job(REPO, job.id, "failure")
    payloads["completed"] = github_sim.workflow_job_payload(REPO, job.id, "completed")
    member = f"{github_sim.repo(REPO).id}:{job.id}"

    def index() -> tuple[bool, bool]:
        return (member in jobstore.running_before(redis_client, "laptop", fake_clock()),
                member in jobstore.open_before(redis_client, fake_clock()))

    def deliver(action: str) -> None:
        event = WorkflowJobEvent.parse(payloads[action])
        jobstore.upsert(redis_client, event.snapshot(), seen_at=fake_clock(), pools=["laptop"],
                        rule=p.rollback.failure_rate.counting, retention_seconds=RETENTION, now=fake_clock())

    deliver("queued")
    assert index() == (False, True)
    deliver("in_progress")
    assert index() == (True, True)
    deliver("completed")
    assert index() == (False, False)
    redis_client.flushall()
    for action in ("completed", "queued", "in_progress", "queued"):  # out of order, repeated
        deliver(action)
        assert index() == (False, False)


def test_the_scheduled_tasks_run_the_watchdog_through_the_worker(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock, drain: Any) -> None:
    p = policy()
    job = hung(github_sim, fake_clock)
    seen(redis_client, github_sim, job, "in_progress", p, fake_clock() - 2 * HOUR)
    for spec in (tasks.WATCHDOG_TIMEOUTS, tasks.WATCHDOG_STRANDED, tasks.WATCHDOG_RERUN):
        tasks.enqueue(spec, connection=redis_client)
    drain(("github",), policy=p, github=github_app)
    assert [(c.kind, c.target, c.status) for c in github_sim.calls()] == [("cancel", job.run_id, 202)]


def test_retention_trims_the_running_and_open_indexes(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], redis_client: redis.Redis,
        fake_clock: FakeClock) -> None:
    p = policy()
    job = hung(github_sim, fake_clock)
    seen(redis_client, github_sim, job, "in_progress", p, fake_clock())
    later = fake_clock() + RETENTION + 3 * HOUR
    assert jobstore.running_before(redis_client, "laptop", later) != []
    jobstore.trim_indexes(redis_client, retention_seconds=RETENTION, now=later)
    assert jobstore.running_before(redis_client, "laptop", later) == []
    assert jobstore.open_before(redis_client, later) == []


def test_a_replay_storm_of_a_runner_lost_jobs_deliveries_makes_no_second_rerun(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock, client: Any, drain: Any) -> None:
    """Through the real intake, worker and replay API: the job's deliveries, replayed one by one and in bulk."""
    lost = github_sim.add_job(REPO, labels=LAPTOP, status="completed", conclusion="failure", runner_name="laptop-1",
                              started_at=fake_clock() - 600)
    github_sim.finish_run(REPO, lost.run_id, "failure")
    guids = [f"lost-{n}" for n in range(3)]
    for guid, action in zip(guids, ("queued", "in_progress", "completed"), strict=True):
        deliver(client, github_sim.workflow_job_payload(REPO, lost.id, action), guid)
    drain(("events",))
    dog = make(redis_client, github_app, Policy(), fake_clock, {lost.id: "runner"})  # no policy: pool self-hosted
    assert dog.rerun_runner_failures().acted == [f"rerun {lost.id}"]
    for _ in range(5):
        for guid in guids:
            assert client.post(f"/api/deliveries/{guid}/replay", headers=admin_headers()).status_code == 202
    assert client.post("/api/replays", json={"repo": REPO}, headers=admin_headers()).status_code == 202
    for guid, action in zip(guids, ("queued", "in_progress", "completed"), strict=True):
        deliver(client, github_sim.workflow_job_payload(REPO, lost.id, action), guid + "-redelivered")
    drain(("events",))
    drain(("events",))  # the bulk replay's own tasks
    shown = client.get(f"/api/deliveries/{guids[2]}", headers=admin_headers()).get_json()
    assert len(shown["attempts"]) >= 7  # the first run, five replays, the bulk replay: the storm did run
    for _ in range(3):
        fake_clock.advance(60)
        dog.rerun_runner_failures()
    assert len(github_sim.calls("rerun")) == 1
    assert record(redis_client, github_sim, lost)["run_attempt"] == 1


@pytest.mark.parametrize("url", ["javascript:alert(1)", "https://github.com/x y", "http://github.com/o/r", None])
def test_a_job_url_that_is_not_a_plain_https_link_is_left_out_of_the_notice(
        github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp, redis_client: redis.Redis,
        fake_clock: FakeClock, url: str | None) -> None:
    p = policy()
    job = hung(github_sim, fake_clock)
    payload = github_sim.workflow_job_payload(REPO, job.id, "in_progress")
    payload["workflow_job"]["html_url"] = url
    event = WorkflowJobEvent.parse(payload)
    jobstore.upsert(redis_client, event.snapshot(), seen_at=fake_clock(), pools=["laptop"],
                    rule=p.rollback.failure_rate.counting, retention_seconds=RETENTION, now=fake_clock())
    assert make(redis_client, github_app, p, fake_clock).sweep_timeouts().acted == [f"cancel {job.id}"]
    (notice,) = [n for _, n in notices.since(redis_client)]
    assert notice.links == {}
