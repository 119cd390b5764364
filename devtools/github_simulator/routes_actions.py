"""Workflow runs and jobs, their cancel / force-cancel / re-run, and check-run annotations (installation token)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, request

from devtools.github_simulator import actions, shapes, shapes_actions
from devtools.github_simulator.app import api_url, json_response, sim
from devtools.github_simulator.errors import ApiError, not_found
from devtools.github_simulator.routes_app import _int_arg
from devtools.github_simulator.routes_repo import load

bp = Blueprint("sim_actions", __name__, url_prefix="/repos/<owner>/<repo>")


def paged(items: Sequence[Any], path: str) -> tuple[Sequence[Any], dict[str, str]]:
    """One page of `items` by `per_page`/`page`, with GitHub's `Link: rel="next"` while more remain."""
    per_page, page = _int_arg("per_page", 30, 1, 100), _int_arg("page", 1, 1, 10**6)
    headers = {}
    if page * per_page < len(items):
        query = {k: v for k, v in request.args.items() if k != "page"} | {"page": page + 1, "per_page": per_page}
        headers["Link"] = f'<{api_url()}{path}?{urlencode(query)}>; rel="next"'
    return items[(page - 1) * per_page: page * per_page], headers


@bp.get("/actions/runs/<int:run_id>")
def get_run(owner: str, repo: str, run_id: int) -> Response:
    r, _ = load(owner, repo, "actions", "read")
    found = r.runs.get(run_id)
    if found is None:
        raise not_found()
    return json_response(shapes_actions.run(sim(), api_url(), r, found))


@bp.get("/actions/jobs/<int:job_id>")
def get_job(owner: str, repo: str, job_id: int) -> Response:
    r, _ = load(owner, repo, "actions", "read")
    if job_id not in r.jobs:
        raise not_found()
    return json_response(shapes.job(sim(), api_url(), r, r.jobs[job_id]))


def _recorded(kind: str, full_name: str, target: int, act: Callable[[], int | None], *, status: int) -> Response:
    """Run `act` and record the call with whatever status it ends in, refusals included."""
    simulator = sim()
    try:
        new_job = act()
    except ApiError as exc:
        simulator.record_call(kind, full_name, target, exc.status)
        raise
    simulator.record_call(kind, full_name, target, status, new_job)
    return json_response({}, status)


def _stop(owner: str, repo: str, run_id: int, *, force: bool) -> int | None:
    r, _ = load(owner, repo, "actions")
    simulator = sim()
    with simulator.lock:
        actions.stop_run(r, run_id, force=force, now=simulator.clock())
    return None


@bp.post("/actions/runs/<int:run_id>/cancel")
def cancel_run(owner: str, repo: str, run_id: int) -> Response:
    return _recorded("cancel", f"{owner}/{repo}", run_id, lambda: _stop(owner, repo, run_id, force=False), status=202)


@bp.post("/actions/runs/<int:run_id>/force-cancel")
def force_cancel_run(owner: str, repo: str, run_id: int) -> Response:
    return _recorded("force-cancel", f"{owner}/{repo}", run_id, lambda: _stop(owner, repo, run_id, force=True),
                     status=202)


def _rerun(owner: str, repo: str, job_id: int) -> int | None:
    r, _ = load(owner, repo, "actions")
    data = request.get_json(silent=True)
    if data is not None and (not isinstance(data, dict) or not isinstance(data.get("enable_debug_logging", False),
                                                                           bool)):
        raise ApiError(422, "Invalid request.\n\nFor 'properties/enable_debug_logging', it is not a boolean.")
    simulator = sim()
    with simulator.lock:
        return actions.rerun_job(r, job_id, now=simulator.clock()).id


@bp.post("/actions/jobs/<int:job_id>/rerun")
def rerun_job(owner: str, repo: str, job_id: int) -> Response:
    return _recorded("rerun", f"{owner}/{repo}", job_id, lambda: _rerun(owner, repo, job_id), status=201)


@bp.get("/check-runs/<int:check_run_id>/annotations")
def list_annotations(owner: str, repo: str, check_run_id: int) -> Response:
    r, _ = load(owner, repo, "checks", "read")
    job = r.jobs.get(check_run_id)
    if job is None:
        raise not_found()
    items = [shapes_actions.annotation(sim(), r, job.head_sha, a) for a in r.annotations.get(check_run_id, [])]
    chunk, headers = paged(items, f"/repos/{r.full_name}/check-runs/{check_run_id}/annotations")
    return json_response(list(chunk), headers=headers)
