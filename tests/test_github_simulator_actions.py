"""The simulator's runs, jobs, annotations and issues over HTTP: GitHub's shapes where the subset lacks them,
the control API that seeds them and reads back the cancel / rerun calls, and the App's permissions."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from devtools.github_simulator import DEFAULT_PERMISSIONS, SimulatorServer
from devtools.github_simulator.actions import annotation, step, stop_run
from runnerguard.github import GitHubApp
from runnerguard.services import app_setup as app_manifest
from tests.github_fixtures import REPO, WebhookReceiver

R = f"/repos/{REPO}"
# Required keys of GitHub's REST description (github/rest-api-description) for the answers the fixture subset
# does not carry: `check-annotation` and `issue`.
ANNOTATION_KEYS = {"path", "start_line", "end_line", "start_column", "end_column", "annotation_level", "title",
                   "message", "raw_details", "blob_href"}
ISSUE_KEYS = {"id", "node_id", "url", "repository_url", "labels_url", "comments_url", "events_url", "html_url",
              "number", "state", "title", "user", "labels", "assignee", "milestone", "comments", "created_at",
              "updated_at", "closed_at", "author_association"}


@pytest.fixture()
def token(github_app: GitHubApp, sim_repo: tuple[str, int]) -> str:
    return github_app.installation_token(sim_repo[1])


def api(github_sim: SimulatorServer, method: str, path: str, token: str, body: Any = None) -> requests.Response:
    return requests.request(method, github_sim.url + path, json=body, timeout=5,
                            headers={"Authorization": f"token {token}"})


def control(github_sim: SimulatorServer, method: str, path: str, body: Any = None,
            expect: int | None = None) -> Any:
    answer = requests.request(method, f"{github_sim.url}/_sim{path}", json=body, timeout=5)
    assert answer.status_code == (expect if expect is not None else 201 if method == "POST" else 200), answer.text
    return answer.json()


def test_manifest_and_simulator_grant_the_same_permissions() -> None:
    assert app_manifest.load_manifest()["default_permissions"] == DEFAULT_PERMISSIONS


def test_annotation_and_issue_answers_carry_githubs_required_keys(github_sim: SimulatorServer, token: str) -> None:
    job = github_sim.add_job(REPO, status="completed", conclusion="failure")
    github_sim.add_annotations(REPO, job.id, [annotation("The runner has received a shutdown signal.")])
    (item,) = api(github_sim, "GET", f"{R}/check-runs/{job.id}/annotations", token).json()
    assert ANNOTATION_KEYS <= set(item)
    assert item["blob_href"].endswith(f"/{REPO}/blob/{job.head_sha}/.github")
    created = api(github_sim, "POST", f"{R}/issues", token, {"title": "t", "labels": [{"name": "a"}, "b"]})
    assert created.status_code == 201 and ISSUE_KEYS <= set(created.json())
    assert [x["name"] for x in created.json()["labels"]] == ["a", "b"]
    listing = api(github_sim, "GET", f"{R}/issues?labels=a,b", token).json()
    assert [i["number"] for i in listing] == [created.json()["number"]] and "pull_request" not in listing[0]


def test_cancel_force_cancel_and_rerun_answer_like_github(github_sim: SimulatorServer, token: str) -> None:
    job = github_sim.add_job(REPO, status="in_progress")
    cancel = api(github_sim, "POST", f"{R}/actions/runs/{job.run_id}/cancel", token)
    assert (cancel.status_code, cancel.json()) == (202, {})
    again = api(github_sim, "POST", f"{R}/actions/runs/{job.run_id}/force-cancel", token)
    assert again.status_code == 409
    assert set(again.json()) == {"message", "documentation_url", "status"}  # basic-error
    rerun = api(github_sim, "POST", f"{R}/actions/jobs/{job.id}/rerun", token, {"enable_debug_logging": True})
    assert (rerun.status_code, rerun.json()) == (201, {})
    bad = api(github_sim, "POST", f"{R}/actions/jobs/{job.id}/rerun", token, {"enable_debug_logging": "yes"})
    assert bad.status_code == 422
    refused = api(github_sim, "POST", f"{R}/actions/jobs/{job.id}/rerun", token)  # attempt 2 is queued now
    assert refused.status_code == 403 and refused.json()["message"] == "This workflow is already running"


def test_unauthenticated_and_uninstalled_calls_are_refused(github_sim: SimulatorServer, token: str,
                                                          github_app: GitHubApp) -> None:
    job = github_sim.add_job(REPO, status="in_progress")
    for method, path in (("GET", f"{R}/actions/runs/{job.run_id}"), ("POST", f"{R}/actions/jobs/{job.id}/rerun"),
                         ("GET", f"{R}/check-runs/{job.id}/annotations"), ("POST", f"{R}/issues")):
        assert requests.request(method, github_sim.url + path, timeout=5).status_code == 401
        # The App's JWT is not an installation token: GitHub refuses it on repository endpoints.
        jwt = requests.request(method, github_sim.url + path, timeout=5,
                               headers={"Authorization": f"Bearer {github_app.app_jwt()}"})
        assert jwt.status_code == 401
    github_sim.add_repo("other-org/private", {"a": "b"})
    github_sim.install(["other-org/private"])
    other = github_sim.add_job("other-org/private", status="in_progress")
    # A token of one installation cannot touch another's runs: 404, as GitHub hides the repository.
    answer = api(github_sim, "POST", f"/repos/other-org/private/actions/runs/{other.run_id}/cancel", token)
    assert answer.status_code == 404
    assert github_sim.repo("other-org/private").runs[other.run_id].status == "in_progress"
    # Nor reach it by naming its run under its own repository.
    assert api(github_sim, "POST", f"{R}/actions/runs/{other.run_id}/cancel", token).status_code == 404


def test_control_api_seeds_runs_jobs_annotations_and_reads_back_calls(github_sim: SimulatorServer, token: str,
                                                                      github_app: GitHubApp,
                                                                      sim_repo: tuple[str, int]) -> None:
    run = control(github_sim, "POST", f"{R}/runs",
                  {"head_repository": "mallory/hello-world", "event": "pull_request", "ignores_cancel": True})
    job = control(github_sim, "POST", f"{R}/actions-jobs", {
        "run_id": run["id"], "status": "in_progress", "runner_name": "laptop-1", "labels": ["self-hosted"],
        "steps": [step(1, "Set up job"), step(2, "Run tests", "in_progress", None)]})
    control(github_sim, "POST", f"{R}/check-runs/{job['id']}/annotations",
            {"annotations": [annotation("lost communication with the server")]})
    client = github_app.installation(sim_repo[1])
    assert client.get_run(REPO, run["id"]).from_fork
    assert [a.message for a in client.list_annotations(REPO, job["id"])] == ["lost communication with the server"]
    client.cancel_run(REPO, run["id"])
    assert control(github_sim, "GET", f"{R}/runs/{run['id']}")["cancel_requested"] is True
    assert client.get_job(REPO, job["id"]).status == "in_progress"  # a hung runner
    client.force_cancel_run(REPO, run["id"])
    calls = control(github_sim, "GET", "/actions/calls")
    assert [(c["kind"], c["target"], c["status"]) for c in calls["calls"]] == [
        ("cancel", run["id"], 202), ("force-cancel", run["id"], 202)]
    assert calls["accepted"] == {"cancel": {str(run["id"]): 1}, "force-cancel": {str(run["id"]): 1}}
    seen = control(github_sim, "GET", f"{R}/actions-jobs/{job['id']}")
    assert (seen["status"], seen["conclusion"]) == ("completed", "cancelled")
    client.rerun_job(REPO, job["id"])
    new_id = control(github_sim, "GET", "/actions/calls?kind=rerun")["calls"][0]["new_job_id"]
    assert control(github_sim, "GET", f"{R}/actions-jobs/{new_id}")["rerun_of"] == job["id"]
    control(github_sim, "POST", f"{R}/actions-jobs/{new_id}/complete", {"conclusion": "success"}, expect=200)
    control(github_sim, "POST", f"{R}/runs/{run['id']}/complete", {"conclusion": "success"}, expect=200)
    assert client.get_run(REPO, run["id"]).conclusion == "success"


def test_control_api_seeds_and_shows_issues(github_sim: SimulatorServer, github_app: GitHubApp,
                                            sim_repo: tuple[str, int]) -> None:
    seeded = control(github_sim, "POST", f"{R}/issues", {"title": "old", "labels": ["runnerguard:outage"],
                                                        "user": "runnerguard[bot]"})
    client = github_app.installation(sim_repo[1])
    assert [i.number for i in client.list_issues(REPO, labels=["runnerguard:outage"])] == [seeded["number"]]
    client.create_issue_comment(REPO, seeded["number"], "still down")
    (shown,) = control(github_sim, "GET", f"{R}/issues")
    assert shown["comments_bodies"] == ["still down"] and shown["label_names"] == ["runnerguard:outage"]
    control(github_sim, "POST", f"{R}/issues-enabled", {"enabled": False}, expect=200)
    assert api(github_sim, "GET", f"{R}/issues", github_app.installation_token(sim_repo[1])).status_code == 410


def test_control_api_refuses_unknown_keys(github_sim: SimulatorServer, sim_repo: tuple[str, int]) -> None:
    control(github_sim, "POST", f"{R}/runs", {"head_repo": "typo/x"}, expect=400)
    control(github_sim, "POST", f"{R}/actions-jobs", {"step": []}, expect=400)
    control(github_sim, "POST", f"{R}/check-runs/1/annotations", {"annotations": "x"}, expect=400)


def test_a_rerun_jobs_webhook_is_attempt_two(github_sim: SimulatorServer, token: str,
                                             webhook_receiver: WebhookReceiver) -> None:
    job = github_sim.add_job(REPO, status="completed", conclusion="failure")
    github_sim.finish_run(REPO, job.run_id, "failure")
    assert api(github_sim, "POST", f"{R}/actions/jobs/{job.id}/rerun", token).status_code == 201
    (call,) = github_sim.calls("rerun", accepted=True)
    assert call.new_job_id is not None
    github_sim.configure_webhook(webhook_receiver.url, "s")
    github_sim.emit_workflow_job(REPO, call.new_job_id, "queued")
    payload = json.loads(webhook_receiver.received[0].body)
    assert payload["workflow_job"]["run_attempt"] == 2 and payload["workflow_job"]["id"] == call.new_job_id
    assert payload["workflow_job"]["run_id"] == job.run_id


def test_runs_and_job_ids_are_deterministic(app_public_pem: bytes) -> None:
    """Two simulators fed the same steps answer the same states and call logs (ids differ only by offset)."""
    def scenario() -> list[tuple[str, int, str | None]]:
        with SimulatorServer(app_id=1, app_public_key_pem=app_public_pem, clock=lambda: 1_700_000_000.0) as sim:
            sim.add_repo(REPO, {"a": "b"})
            run = sim.add_run(REPO, ignores_cancel=True)
            job = sim.add_job(REPO, run_id=run.id, status="in_progress")
            r = sim.repo(REPO)
            states = []
            for force in (False, True):
                stop_run(r, run.id, force=force, now=sim.clock())
                states.append((r.runs[run.id].status, job.run_attempt, r.jobs[job.id].conclusion))
            return states

    assert scenario() == scenario() == [("in_progress", 1, None), ("completed", 1, "cancelled")]
