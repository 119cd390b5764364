"""Pull requests, issue comments and labels (installation token); workflow runs live in routes_actions."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, Response, request

from devtools.github_simulator import shapes
from devtools.github_simulator.app import api_url, json_response, sim
from devtools.github_simulator.errors import ApiError, validation_failed
from devtools.github_simulator.issues import require_issues
from devtools.github_simulator.repos import next_id
from devtools.github_simulator.routes_app import _int_arg
from devtools.github_simulator.routes_repo import body, load

bp = Blueprint("sim_pulls", __name__, url_prefix="/repos/<owner>/<repo>")


@bp.get("/pulls")
def list_pulls(owner: str, repo: str) -> Response:
    r, _ = load(owner, repo, "pull_requests", "read")
    state = request.args.get("state", "open")
    if state not in ("open", "closed", "all"):
        raise validation_failed("PullRequest", "state is not valid", code="invalid", field="state")
    head, base = request.args.get("head"), request.args.get("base")
    pulls = sorted(r.pulls.values(), key=lambda p: p.number, reverse=True)  # GitHub: newest first
    if state != "all":
        pulls = [p for p in pulls if p.state == state]
    if head:
        # GitHub filters by "user:ref-name"; the owner part must match the repository's owner here.
        user, _, branch = head.partition(":")
        pulls = [p for p in pulls if branch and user.lower() == r.owner.lower() and p.head == branch]
    if base:
        pulls = [p for p in pulls if p.base == base]
    per_page, page = _int_arg("per_page", 30, 1, 100), _int_arg("page", 1, 1, 10**6)
    chunk = pulls[(page - 1) * per_page: page * per_page]
    headers = {}
    if page * per_page < len(pulls):
        query = {k: v for k, v in request.args.items() if k != "page"} | {"page": page + 1, "per_page": per_page}
        headers["Link"] = f'<{api_url()}/repos/{r.full_name}/pulls?{urlencode(query)}>; rel="next"'
    simulator = sim()
    return json_response([shapes.pull(simulator, api_url(), r, p, full=False) for p in chunk], headers=headers)


@bp.post("/pulls")
def create_pull(owner: str, repo: str) -> Response:
    r, _ = load(owner, repo, "pull_requests")
    data = body()
    title, head, base = data.get("title"), data.get("head"), data.get("base")
    if not all(isinstance(x, str) and x for x in (title, head, base)):
        raise validation_failed("PullRequest", "title, head and base are required", code="missing_field")
    simulator = sim()
    with simulator.lock:
        pull = r.open_pull(title=str(title), head=str(head), base=str(base), body=data.get("body"),
                           draft=bool(data.get("draft", False)), user=f"{simulator.app_slug}[bot]",
                           now=simulator.clock())
        return json_response(shapes.pull(simulator, api_url(), r, pull), 201)


@bp.get("/pulls/<int:number>")
def get_pull(owner: str, repo: str, number: int) -> Response:
    r, _ = load(owner, repo, "pull_requests", "read")
    return json_response(shapes.pull(sim(), api_url(), r, r.pull(number)))


@bp.patch("/pulls/<int:number>")
def update_pull(owner: str, repo: str, number: int) -> Response:
    r, _ = load(owner, repo, "pull_requests")
    data = body()
    simulator = sim()
    with simulator.lock:
        pull = r.pull(number)
        if "state" in data:
            if data["state"] not in ("open", "closed"):
                raise validation_failed("PullRequest", "state is not valid", code="invalid", field="state")
            if pull.merged and data["state"] == "open":
                raise ApiError(422, "Validation Failed", errors=[{"resource": "PullRequest", "code": "custom",
                                                                    "message": "Cannot reopen a merged pull request"}])
            pull.state = data["state"]
            pull.closed_at = simulator.clock() if pull.state == "closed" else None
        for key in ("title", "body"):
            if isinstance(data.get(key), str):
                setattr(pull, key, data[key])
        pull.updated_at = simulator.clock()
        return json_response(shapes.pull(simulator, api_url(), r, pull))


@bp.post("/issues/<int:number>/comments")
def create_comment(owner: str, repo: str, number: int) -> Response:
    r, _ = load(owner, repo, "issues")
    data = body()
    if not isinstance(data.get("body"), str) or not data["body"]:
        raise validation_failed("IssueComment", "body is required", code="missing_field", field="body")
    simulator = sim()
    with simulator.lock:
        r.issue_exists(number)
        if number in r.issues:
            require_issues(r)  # a pull request takes comments even where issues are turned off
        comment = {"id": next_id(), "body": data["body"], "at": simulator.clock()}
        r.comments.setdefault(number, []).append(comment)
        return json_response(shapes.comment(simulator, api_url(), r, number, comment), 201)


@bp.post("/issues/<int:number>/labels")
def add_labels(owner: str, repo: str, number: int) -> Response:
    r, _ = load(owner, repo, "issues")
    data = request.get_json(silent=True)
    labels = data.get("labels") if isinstance(data, dict) else data  # GitHub takes {"labels": [...]} or a bare list
    if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
        raise validation_failed("Label", "labels must be a list of names", code="invalid", field="labels")
    with sim().lock:
        r.issue_exists(number)
        current = r.labels.setdefault(number, [])
        current += [name for name in labels if name not in current]
        return json_response([shapes.label(api_url(), r, name) for name in current])
