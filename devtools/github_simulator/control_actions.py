"""`/_sim/...` for workflow runs, jobs, steps, annotations, issues, and the cancel / rerun calls made."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, request

from devtools.github_simulator import shapes, shapes_actions
from devtools.github_simulator.app import api_url, json_response, sim
from devtools.github_simulator.control import _body
from devtools.github_simulator.errors import ApiError

bp = Blueprint("sim_control_actions", __name__, url_prefix="/_sim")

_RUN_KEYS = ("workflow_name", "event", "head_repository", "head_sha", "head_branch", "status", "conclusion",
             "run_attempt", "rerunnable", "ignores_cancel", "run_id")
_JOB_KEYS = ("name", "labels", "status", "conclusion", "run_id", "workflow_name", "runner_name", "steps", "started_at",
             "completed_at")


def _pick(data: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ApiError(400, f"unknown keys: {', '.join(unknown)}")
    return data


@bp.post("/repos/<owner>/<repo>/runs")
def add_run(owner: str, repo: str) -> Response:
    run = sim().add_run(f"{owner}/{repo}", **_pick(_body(), _RUN_KEYS))
    return json_response({"id": run.id}, 201)


@bp.get("/repos/<owner>/<repo>/runs/<int:run_id>")
def get_run(owner: str, repo: str, run_id: int) -> Response:
    simulator = sim()
    r = simulator.repo(f"{owner}/{repo}")
    if run_id not in r.runs:
        raise ApiError(404, "Not Found")
    body = shapes_actions.run(simulator, api_url(), r, r.runs[run_id])
    return json_response(body | {"cancel_requested": r.runs[run_id].cancel_requested,
                                 "job_ids": list(r.runs[run_id].jobs)})


@bp.post("/repos/<owner>/<repo>/runs/<int:run_id>/complete")
def complete_run(owner: str, repo: str, run_id: int) -> Response:
    sim().finish_run(f"{owner}/{repo}", run_id, _body().get("conclusion", "success"))
    return json_response({}, 200)


@bp.post("/repos/<owner>/<repo>/actions-jobs")
def add_job(owner: str, repo: str) -> Response:
    """Like `/jobs`, with every `add_job` option (steps, times, runner)."""
    job = sim().add_job(f"{owner}/{repo}", **_pick(_body(), _JOB_KEYS))
    return json_response({"id": job.id, "run_id": job.run_id}, 201)


@bp.get("/repos/<owner>/<repo>/actions-jobs/<int:job_id>")
def get_job(owner: str, repo: str, job_id: int) -> Response:
    simulator = sim()
    r = simulator.repo(f"{owner}/{repo}")
    if job_id not in r.jobs:
        raise ApiError(404, "Not Found")
    return json_response(shapes.job(simulator, api_url(), r, r.jobs[job_id]) | {"rerun_of": r.jobs[job_id].rerun_of})


@bp.post("/repos/<owner>/<repo>/actions-jobs/<int:job_id>/steps")
def set_steps(owner: str, repo: str, job_id: int) -> Response:
    steps = _body().get("steps")
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise ApiError(400, "steps must be a list of objects")
    sim().set_steps(f"{owner}/{repo}", job_id, steps)
    return json_response({}, 200)


@bp.post("/repos/<owner>/<repo>/actions-jobs/<int:job_id>/complete")
def complete_job(owner: str, repo: str, job_id: int) -> Response:
    sim().finish_job(f"{owner}/{repo}", job_id, _body().get("conclusion", "success"))
    return json_response({}, 200)


@bp.post("/repos/<owner>/<repo>/check-runs/<int:check_run_id>/annotations")
def add_annotations(owner: str, repo: str, check_run_id: int) -> Response:
    items = _body().get("annotations")
    if not isinstance(items, list) or not all(isinstance(a, dict) for a in items):
        raise ApiError(400, "annotations must be a list of objects")
    sim().add_annotations(f"{owner}/{repo}", check_run_id, items)
    return json_response({}, 201)


@bp.get("/actions/calls")
def calls() -> Response:
    """Every cancel / force-cancel / rerun call, oldest first, and how many of each kind per target were accepted."""
    made = sim().calls(request.args.get("kind"))
    accepted: dict[str, dict[str, int]] = {}
    for call in made:
        if 200 <= call.status < 300:
            per_kind = accepted.setdefault(call.kind, {})
            per_kind[str(call.target)] = per_kind.get(str(call.target), 0) + 1
    return json_response({"calls": [asdict(c) for c in made], "accepted": accepted})


@bp.post("/repos/<owner>/<repo>/issues")
def add_issue(owner: str, repo: str) -> Response:
    data = _pick(_body(), ("title", "body", "labels", "user", "state"))
    issue = sim().add_issue(f"{owner}/{repo}", data.get("title", ""), body=data.get("body"),
                            labels=data.get("labels") or [], user=data.get("user", "octocat"),
                            state=data.get("state", "open"))
    return json_response({"number": issue.number}, 201)


@bp.get("/repos/<owner>/<repo>/issues")
def list_issues(owner: str, repo: str) -> Response:
    """Every issue with its comments and labels, to check what a notifier wrote."""
    simulator = sim()
    r = simulator.repo(f"{owner}/{repo}")
    return json_response([shapes_actions.issue(simulator, api_url(), r, i) | {
        "comments_bodies": simulator.comments(r.full_name, i.number),
        "label_names": simulator.labels(r.full_name, i.number)} for i in simulator.issues(r.full_name)])


@bp.post("/repos/<owner>/<repo>/issues-enabled")
def issues_enabled(owner: str, repo: str) -> Response:
    sim().set_issues_enabled(f"{owner}/{repo}", bool(_body().get("enabled", True)))
    return json_response({}, 200)
