"""The watchdog's rerun reads the causes the attribution task records (issues #14 and #15 together): real deliveries
through the intake, the cause task on the worker, then the rerun sweep, with no seam in between."""

from __future__ import annotations

import time

import redis
from flask.testing import FlaskClient

from config import parse_policy
from devtools.github_simulator import SimulatorServer
from devtools.github_simulator.actions import step
from runnerguard.github import GitHubApp
from runnerguard.services.watchdog import Watchdog
from runnerguard.store import jobstore
from tests.github_fixtures import REPO
from tests.helpers import admin_headers
from tests.test_timings import deliver

LAPTOP = ["self-hosted", "laptop"]
POLICY = parse_policy({"pool": [{"name": "laptop", "labels": LAPTOP, "max_run": "90m"}]})


def finished_job(sim: SimulatorServer, steps: list[dict[str, object]]) -> int:
    job = sim.add_job(REPO, labels=LAPTOP, status="completed", conclusion="failure", runner_name="laptop-1",
                      started_at=time.time() - 600, steps=steps)
    sim.finish_run(REPO, job.run_id, "failure")
    return int(job.id)


def send(client: FlaskClient, sim: SimulatorServer, job_id: int, tag: str) -> None:
    for action in ("queued", "in_progress", "completed"):
        deliver(client, sim.workflow_job_payload(REPO, job_id, action), f"{tag}-{job_id}-{action.replace('_', '-')}")


def test_a_runner_failure_is_rerun_once_from_its_recorded_cause_and_a_user_step_failure_never(
        client: FlaskClient, github_sim: SimulatorServer, sim_repo: tuple[str, int], github_app: GitHubApp,
        redis_client: redis.Redis, drain) -> None:  # type: ignore[no-untyped-def]
    setup = finished_job(github_sim, [step(1, "Set up job", conclusion="failure")])
    tests = finished_job(github_sim, [step(1, "Set up job"), step(2, "Run tests", conclusion="failure")])
    for job_id in (setup, tests):
        send(client, github_sim, job_id, "first")
    drain(("events", "github"), POLICY, github=github_app)
    repo_id = github_sim.repo(REPO).id
    causes = {r["job_id"]: r["failure_cause"] for r in jobstore.load(redis_client, [f"{repo_id}:{setup}",
                                                                                   f"{repo_id}:{tests}"])}
    assert causes == {setup: "runner", tests: "unknown"}
    dog = Watchdog(redis=redis_client, policy=POLICY, github=github_app, retention_seconds=30 * 86400,
                   clock=time.time)
    assert dog.rerun_runner_failures().acted == [f"rerun {setup}"]
    # every delivery redelivered (the body dedupe answers 200) and replayed by an admin (its tasks, the cause task
    # included, run again), more sweeps: still one rerun
    for job_id in (setup, tests):
        send(client, github_sim, job_id, "again")
        for action in ("queued", "in-progress", "completed"):
            replayed = client.post(f"/api/deliveries/first-{job_id}-{action}/replay", headers=admin_headers())
            assert replayed.status_code == 202, replayed.get_json()
    drain(("events", "github"), POLICY, github=github_app)
    assert {r["failure_cause"] for r in jobstore.load(redis_client, [f"{repo_id}:{setup}"])} == {"runner"}
    for _ in range(3):
        dog.rerun_runner_failures()
    assert [c.target for c in github_sim.calls("rerun")] == [setup]
