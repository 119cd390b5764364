"""The Actions calls end to end against the simulator: runs, jobs with steps, annotations, cancel, re-run."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from devtools.github_simulator import SimulatorServer
from devtools.github_simulator.actions import annotation, step
from runnerguard.github import (
    Conflict,
    Forbidden,
    InstallationClient,
    MalformedResponse,
    NotFound,
    NotRerunnable,
    RateLimited,
    RetryPolicy,
)
from tests.github_fixtures import REPO, FakeClock

LOST = ("The self-hosted runner: laptop-extra lost communication with the server. Verify the machine is running "
        "and has a healthy network connection.")


def test_get_run_names_its_head_repository_and_attempt(github_sim: SimulatorServer,
                                                       installation_client: InstallationClient) -> None:
    added = github_sim.add_run(REPO, event="push", workflow_name="CI")
    run = installation_client.get_run(REPO, added.id)
    repo_id = github_sim.repo(REPO).id
    assert (run.id, run.name, run.event, run.status, run.conclusion, run.run_attempt) == (
        added.id, "CI", "push", "in_progress", None, 1)
    assert (run.repository_id, run.repository_full_name) == (repo_id, REPO)
    assert (run.head_repository_id, run.head_repository_full_name) == (repo_id, REPO)
    assert run.head_sha == github_sim.branches(REPO)["main"] and not run.from_fork


def test_a_forks_run_has_the_fork_as_head_repository(github_sim: SimulatorServer,
                                                     installation_client: InstallationClient) -> None:
    added = github_sim.add_run(REPO, event="pull_request", head_repository="mallory/hello-world",
                               head_sha="f" * 40, head_branch="runnerguard/rollback/laptop")
    run = installation_client.get_run(REPO, added.id)
    assert run.from_fork and run.event == "pull_request"
    assert run.head_repository_full_name == "mallory/hello-world"
    assert run.head_repository_id != github_sim.repo(REPO).id
    assert (run.head_sha, run.head_branch) == ("f" * 40, "runnerguard/rollback/laptop")


def test_a_run_without_head_repository_counts_as_a_fork(github_sim: SimulatorServer,
                                                        installation_client: InstallationClient) -> None:
    added = github_sim.add_run(REPO)
    body = _answer(github_sim, installation_client, f"/actions/runs/{added.id}") | {"head_repository": None}
    github_sim.respond_next(200, body, match=f"/actions/runs/{added.id}")
    run = installation_client.get_run(REPO, added.id)
    assert run.head_repository_id is None and run.from_fork


def test_get_job_carries_steps_attempt_and_times(github_sim: SimulatorServer,
                                                 installation_client: InstallationClient,
                                                 fake_clock: FakeClock) -> None:
    steps = [step(1, "Set up job"), step(2, "Run tests", "completed", "failure"),
             step(3, "Complete job", "queued", None)]
    added = github_sim.add_job(REPO, name="test", labels=["self-hosted", "laptop"], status="completed",
                               conclusion="failure", runner_name="laptop-1", steps=steps,
                               started_at=fake_clock() - 7200)
    job = installation_client.get_job(REPO, added.id)
    assert [(s.number, s.name, s.status, s.conclusion) for s in job.steps] == [
        (1, "Set up job", "completed", "success"), (2, "Run tests", "completed", "failure"),
        (3, "Complete job", "queued", None)]
    assert job.run_attempt == 1 and job.workflow_name == "CI" and job.runner_name == "laptop-1"
    assert job.started_at is not None and job.completed_at is not None
    assert (job.completed_at - job.started_at).total_seconds() == pytest.approx(7200, abs=1)


def test_missing_run_job_and_check_run_are_not_found(installation_client: InstallationClient) -> None:
    for call in (lambda: installation_client.get_run(REPO, 9), lambda: installation_client.get_job(REPO, 9),
                 lambda: installation_client.list_annotations(REPO, 9),
                 lambda: installation_client.force_cancel_run(REPO, 9),
                 lambda: installation_client.rerun_job(REPO, 9)):
        with pytest.raises(NotFound):
            call()


def test_annotations_of_a_job_are_typed_and_paged(github_sim: SimulatorServer,
                                                  installation_client: InstallationClient) -> None:
    job = github_sim.add_job(REPO, status="completed", conclusion="failure")
    github_sim.add_annotations(REPO, job.id, [annotation(LOST)] + [
        annotation(f"warning {n}", path="src/app.py", level="warning", start_line=n, title=None) for n in (1, 2, 3)])
    found = installation_client.list_annotations(REPO, job.id, per_page=2)
    assert [a.message for a in found] == [LOST, "warning 1", "warning 2", "warning 3"]
    assert (found[0].path, found[0].annotation_level, found[0].start_line) == (".github", "failure", 1)
    assert found[1].title is None and found[1].end_line == 1 and found[3].start_line == 3
    assert sum("/annotations" in r.path for r in github_sim.requests) == 2  # two pages
    assert installation_client.list_annotations(REPO, github_sim.add_job(REPO).id) == []


def test_annotations_need_checks_read_and_say_so(github_sim: SimulatorServer, installation_client: InstallationClient,
                                                 sim_repo: tuple[str, int]) -> None:
    job = github_sim.add_job(REPO, status="completed", conclusion="failure")
    github_sim.set_permission(sim_repo[1], "checks", None)
    with pytest.raises(Forbidden) as caught:
        installation_client.list_annotations(REPO, job.id)
    assert caught.value.missing_permission == "checks" and caught.value.status == 403


def test_cancel_completes_the_run_and_its_steps_then_conflicts(github_sim: SimulatorServer,
                                                               installation_client: InstallationClient) -> None:
    job = github_sim.add_job(REPO, status="in_progress", steps=[
        step(1, "Set up job"), step(2, "Run tests", "in_progress", None), step(3, "Post", "queued", None)])
    installation_client.cancel_run(REPO, job.run_id)
    after = installation_client.get_job(REPO, job.id)
    assert (after.status, after.conclusion) == ("completed", "cancelled") and after.completed_at is not None
    assert [(s.status, s.conclusion) for s in after.steps] == [
        ("completed", "success"), ("completed", "cancelled"), ("completed", "skipped")]
    run = installation_client.get_run(REPO, job.run_id)
    assert (run.status, run.conclusion) == ("completed", "cancelled")
    for stop in (installation_client.cancel_run, installation_client.force_cancel_run):
        with pytest.raises(Conflict) as caught:
            stop(REPO, job.run_id)
        assert caught.value.status == 409 and "completed" in caught.value.message
    assert [(c.kind, c.status) for c in github_sim.calls(target=job.run_id)] == [
        ("cancel", 202), ("cancel", 409), ("force-cancel", 409)]


def test_a_hung_run_ignores_cancel_until_force_cancelled(github_sim: SimulatorServer,
                                                         installation_client: InstallationClient) -> None:
    run = github_sim.add_run(REPO, ignores_cancel=True)
    job = github_sim.add_job(REPO, run_id=run.id, status="in_progress")
    installation_client.cancel_run(REPO, run.id)
    assert installation_client.get_job(REPO, job.id).status == "in_progress"
    installation_client.cancel_run(REPO, run.id)  # still accepted: the run has not completed
    installation_client.force_cancel_run(REPO, run.id)
    after = installation_client.get_job(REPO, job.id)
    assert (after.status, after.conclusion) == ("completed", "cancelled")
    assert len(github_sim.calls("cancel", target=run.id, accepted=True)) == 2
    assert len(github_sim.calls("force-cancel", target=run.id, accepted=True)) == 1


@pytest.mark.parametrize("call", ["cancel_run", "force_cancel_run", "rerun_job"])
def test_writes_need_actions_write_and_name_it(github_sim: SimulatorServer, installation_client: InstallationClient,
                                               sim_repo: tuple[str, int], call: str) -> None:
    job = github_sim.add_job(REPO, status="completed", conclusion="failure")
    github_sim.finish_run(REPO, job.run_id, "failure")
    github_sim.set_permission(sim_repo[1], "actions", "read")
    target = job.id if call == "rerun_job" else job.run_id
    with pytest.raises(Forbidden) as caught:
        getattr(installation_client, call)(REPO, target)
    assert caught.value.missing_permission == "actions" and not isinstance(caught.value, NotRerunnable)
    assert [c.status for c in github_sim.calls()] == [403]
    assert installation_client.get_job(REPO, job.id).conclusion == "failure"  # reading needs only read


def test_rerun_starts_attempt_two_with_a_new_job(github_sim: SimulatorServer,
                                                 installation_client: InstallationClient) -> None:
    job = github_sim.add_job(REPO, name="test", status="completed", conclusion="failure")
    github_sim.finish_run(REPO, job.run_id, "failure")
    installation_client.rerun_job(REPO, job.id)
    (call,) = github_sim.calls("rerun")
    assert (call.target, call.status) == (job.id, 201) and call.new_job_id is not None
    again = installation_client.get_job(REPO, call.new_job_id)
    assert (again.name, again.run_id, again.run_attempt, again.status, again.conclusion) == (
        "test", job.run_id, 2, "queued", None)
    assert installation_client.get_job(REPO, job.id).run_attempt == 1  # the first attempt stays as it ended
    assert installation_client.get_run(REPO, job.run_id).run_attempt == 2


def test_rerun_of_a_running_or_refused_run_is_not_rerunnable(github_sim: SimulatorServer,
                                                             installation_client: InstallationClient) -> None:
    running = github_sim.add_job(REPO, status="completed", conclusion="failure")  # its run is still in progress
    with pytest.raises(NotRerunnable) as caught:
        installation_client.rerun_job(REPO, running.id)
    assert caught.value.status == 403 and "already running" in caught.value.message
    old = github_sim.add_run(REPO, status="completed", conclusion="failure", rerunnable=False)
    stale = github_sim.add_job(REPO, run_id=old.id, status="completed", conclusion="failure")
    with pytest.raises(NotRerunnable, match="cannot be retried"):
        installation_client.rerun_job(REPO, stale.id)
    assert [c.status for c in github_sim.calls("rerun")] == [403, 403]
    assert not isinstance(caught.value, Forbidden)  # never mistaken for a missing permission


def test_a_secondary_limit_on_cancel_is_waited_out_and_cancels_once(github_sim: SimulatorServer,
                                                                    installation_client: InstallationClient,
                                                                    fake_clock: FakeClock) -> None:
    job = github_sim.add_job(REPO, status="in_progress")
    installation_client.get_job(REPO, job.id)  # the token first
    github_sim.fail_next(1, "secondary", retry_after=5, match="/cancel")
    installation_client.cancel_run(REPO, job.run_id)
    assert 5 in fake_clock.sleeps
    assert [c.status for c in github_sim.calls("cancel")] == [202]  # the limited try never reached the run


def test_a_rate_limited_rerun_is_rate_limited_not_refused(github_sim: SimulatorServer, sim_repo: tuple[str, int],
                                                          app_factory: Any) -> None:
    client = app_factory(retry=RetryPolicy(max_wait=60)).installation(sim_repo[1])
    job = github_sim.add_job(REPO, status="completed", conclusion="failure")
    github_sim.finish_run(REPO, job.run_id, "failure")
    github_sim.fail_next(1, "primary", reset_in=3000, match="/rerun")
    with pytest.raises(RateLimited):
        client.rerun_job(REPO, job.id)
    assert github_sim.calls("rerun") == []


def test_a_5xx_on_get_run_is_retried(github_sim: SimulatorServer, installation_client: InstallationClient,
                                     fake_clock: FakeClock) -> None:
    run = github_sim.add_run(REPO)
    github_sim.fail_next(2, 502, match="/actions/runs/")
    assert installation_client.get_run(REPO, run.id).id == run.id
    assert fake_clock.sleeps == [1.0, 2.0]


def _answer(github_sim: SimulatorServer, client: InstallationClient, tail: str) -> dict[str, Any]:
    """The simulator's real answer at /repos/REPO{tail}, to damage one field of it."""
    token = client.app.installation_token(client.installation_id)
    answer = requests.get(f"{github_sim.url}/repos/{REPO}{tail}", headers={"Authorization": f"token {token}"},
                          timeout=5)
    assert answer.status_code == 200
    return answer.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(("field", "value"), [
    ("head_repository", {"full_name": "x/y"}),  # no id
    ("head_repository", "octo-org/hello-world"),  # not an object
    ("repository", None),
    ("id", "12"),
    ("run_attempt", 0),
    ("created_at", "yesterday"),
])
def test_a_damaged_run_is_malformed(github_sim: SimulatorServer, installation_client: InstallationClient,
                                    field: str, value: object) -> None:
    run = github_sim.add_run(REPO)
    body = _answer(github_sim, installation_client, f"/actions/runs/{run.id}") | {field: value}
    github_sim.respond_next(200, body, match=f"/actions/runs/{run.id}")
    with pytest.raises(MalformedResponse):
        installation_client.get_run(REPO, run.id)


@pytest.mark.parametrize("steps", [
    "Run tests",
    [{"name": "Run tests", "status": "completed", "conclusion": "failure"}],  # no number
    [{"name": "x", "number": 1, "status": "completed", "conclusion": None, "started_at": "soon"}],
    [7],
])
def test_damaged_steps_are_malformed(github_sim: SimulatorServer, installation_client: InstallationClient,
                                     steps: object) -> None:
    job = github_sim.add_job(REPO, status="completed", conclusion="failure")
    body = _answer(github_sim, installation_client, f"/actions/jobs/{job.id}") | {"steps": steps}
    github_sim.respond_next(200, body, match=f"/actions/jobs/{job.id}")
    with pytest.raises(MalformedResponse):
        installation_client.get_job(REPO, job.id)


@pytest.mark.parametrize("answer", [
    {"message": "x"},  # not a list
    [{"path": ".github", "start_line": "1", "end_line": 1, "message": "m"}],
    [{"start_line": 1, "end_line": 1, "message": "m"}],  # no path
    ["lost communication"],
])
def test_damaged_annotations_are_malformed(github_sim: SimulatorServer, installation_client: InstallationClient,
                                           answer: object) -> None:
    job = github_sim.add_job(REPO, status="completed", conclusion="failure")
    installation_client.get_job(REPO, job.id)
    github_sim.respond_next(200, answer, match="/annotations")
    with pytest.raises(MalformedResponse):
        installation_client.list_annotations(REPO, job.id)


def test_a_payload_repo_name_never_reaches_the_url(installation_client: InstallationClient) -> None:
    for bad in ("octo-org/../admin", "octo-org/x?y=1", "octo-org/x/../../app", "octo-org"):
        with pytest.raises(ValueError, match="not a repository"):
            installation_client.get_run(bad, 1)
        with pytest.raises(ValueError, match="not a repository"):
            installation_client.rerun_job(bad, 1)


def test_a_lost_cancel_answer_is_retried_and_meets_409(github_sim: SimulatorServer, sim_repo: tuple[str, int],
                                                       app_factory: Any) -> None:
    """The watchdog's rule: a cancel whose answer was lost is sent again, and its 409 means the first one worked."""
    quick = app_factory(timeout=(1.0, 0.2)).installation(sim_repo[1])
    job = github_sim.add_job(REPO, status="in_progress")
    quick.get_job(REPO, job.id)
    github_sim.fail_next(1, "lost", match="/cancel")
    with pytest.raises(Conflict):
        quick.cancel_run(REPO, job.run_id)
    assert [c.status for c in github_sim.calls("cancel")] == [202, 409]
    assert quick.get_job(REPO, job.id).conclusion == "cancelled"


def test_a_lost_rerun_answer_meets_already_running_and_reruns_once(github_sim: SimulatorServer,
                                                                   sim_repo: tuple[str, int],
                                                                   app_factory: Any) -> None:
    quick = app_factory(timeout=(1.0, 0.2)).installation(sim_repo[1])
    job = github_sim.add_job(REPO, status="completed", conclusion="failure")
    github_sim.finish_run(REPO, job.run_id, "failure")
    quick.get_job(REPO, job.id)
    github_sim.fail_next(1, "lost", match="/rerun")
    with pytest.raises(NotRerunnable, match="already running"):
        quick.rerun_job(REPO, job.id)
    assert [c.status for c in github_sim.calls("rerun")] == [201, 403]
    assert len(github_sim.repo(REPO).jobs) == 2  # the first job and one new attempt, never two
