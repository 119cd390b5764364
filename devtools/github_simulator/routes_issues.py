"""Issues: open, read, update (close with a reason), list with GitHub's filters (installation token)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from devtools.github_simulator import issues, shapes_actions
from devtools.github_simulator.app import api_url, json_response, sim
from devtools.github_simulator.errors import not_found, validation_failed
from devtools.github_simulator.routes_actions import paged
from devtools.github_simulator.routes_repo import body, load

bp = Blueprint("sim_issues", __name__, url_prefix="/repos/<owner>/<repo>")


@bp.post("/issues")
def create_issue(owner: str, repo: str) -> Response:
    r, _ = load(owner, repo, "issues")
    data = body()
    simulator = sim()
    with simulator.lock:
        issue = issues.open_issue(r, title=data.get("title"), body=data.get("body"), labels=data.get("labels"),
                                  user=f"{simulator.app_slug}[bot]", now=simulator.clock())
        return json_response(shapes_actions.issue(simulator, api_url(), r, issue), 201)


@bp.get("/issues/<int:number>")
def get_issue(owner: str, repo: str, number: int) -> Response:
    r, _ = load(owner, repo, "issues", "read")
    issues.require_issues(r)
    if number in r.pulls:
        return json_response(shapes_actions.pull_as_issue(sim(), api_url(), r, number))
    found = r.issues.get(number)
    if found is None:
        raise not_found()
    return json_response(shapes_actions.issue(sim(), api_url(), r, found))


@bp.patch("/issues/<int:number>")
def update_issue(owner: str, repo: str, number: int) -> Response:
    r, _ = load(owner, repo, "issues")
    issues.require_issues(r)
    data = body()
    simulator = sim()
    with simulator.lock:
        found = r.issues.get(number)
        if found is None:
            raise not_found()
        issues.update_issue(r, found, data, now=simulator.clock())
        return json_response(shapes_actions.issue(simulator, api_url(), r, found))


@bp.get("/issues")
def list_issues(owner: str, repo: str) -> Response:
    """Newest first; pull requests are listed too (with a `pull_request` key), as GitHub lists them."""
    r, _ = load(owner, repo, "issues", "read")
    issues.require_issues(r)
    state = request.args.get("state", "open")
    if state not in ("open", "closed", "all"):
        raise validation_failed("Issue", "state is not valid", code="invalid", field="state")
    wanted = [name.lower() for name in request.args.get("labels", "").split(",") if name]  # names ignore case
    creator = request.args.get("creator")
    simulator = sim()
    rows: list[tuple[int, str, str, dict[str, object]]] = []
    with simulator.lock:
        for i in r.issues.values():
            rows.append((i.number, i.state, i.user, shapes_actions.issue(simulator, api_url(), r, i)))
        for p in r.pulls.values():
            rows.append((p.number, p.state, p.user, shapes_actions.pull_as_issue(simulator, api_url(), r, p.number)))
    reverse = request.args.get("direction", "desc") != "asc"
    picked = [shape for number, st, author, shape in sorted(rows, key=lambda row: row[0], reverse=reverse)
              if state in ("all", st)
              and all(name in {x.lower() for x in r.labels.get(number, [])} for name in wanted)
              and (creator is None or author.lower() == creator.lower())]
    chunk, headers = paged(picked, f"/repos/{r.full_name}/issues")
    return json_response(list(chunk), headers=headers)
