"""`/_sim/...`: the control API over HTTP, so another process (a demo, a load run) can drive the simulator."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from devtools.github_simulator import events, shapes
from devtools.github_simulator.app import api_url, json_response, sim
from devtools.github_simulator.errors import ApiError

bp = Blueprint("sim_control", __name__, url_prefix="/_sim")


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "send a JSON object")
    return data


@bp.post("/repos")
def add_repo() -> Response:
    data = _body()
    repo = sim().add_repo(data["full_name"], data.get("files") or {}, default_branch=data.get("default_branch", "main"),
                          private=bool(data.get("private", False)))
    return json_response({"id": repo.id, "full_name": repo.full_name}, 201)


@bp.post("/installations")
def install() -> Response:
    data = _body()
    iid = sim().install(data["repos"], account=data.get("account"), installation_id=data.get("installation_id"),
                        permissions=data.get("permissions"))
    return json_response({"id": iid}, 201)


@bp.post("/installations/<int:installation_id>/permissions")
def set_permission(installation_id: int) -> Response:
    data = _body()
    sim().set_permission(installation_id, data["name"], data.get("level"))
    return json_response({}, 200)


@bp.post("/failures")
def fail() -> Response:
    data = _body()
    if data.get("status") == "slow":
        sim().slow_next(int(data.get("n", 1)), float(data.get("seconds", 0.5)), match=data.get("match"))
    else:
        sim().fail_next(int(data.get("n", 1)), data.get("status", 502), match=data.get("match"),
                        retry_after=float(data.get("retry_after", 1)), reset_in=float(data.get("reset_in", 30)))
    return json_response({}, 201)


@bp.post("/tokens/expire")
def expire_tokens() -> Response:
    sim().expire_tokens()
    return json_response({}, 200)


@bp.get("/repos/<owner>/<repo>/files")
def files(owner: str, repo: str) -> Response:
    data = sim().files(f"{owner}/{repo}", request.args.get("branch"))
    return json_response({path: blob.decode("utf-8", "replace") for path, blob in data.items()})


@bp.get("/repos/<owner>/<repo>/pulls")
def pulls(owner: str, repo: str) -> Response:
    simulator = sim()
    r = simulator.repo(f"{owner}/{repo}")
    return json_response([shapes.pull(simulator, api_url(), r, p) | {
        "comments_bodies": simulator.comments(r.full_name, p.number),
        "label_names": simulator.labels(r.full_name, p.number)} for p in simulator.pulls(r.full_name)])


@bp.post("/repos/<owner>/<repo>/pulls/<int:number>/merge")
def merge(owner: str, repo: str, number: int) -> Response:
    return json_response({"sha": sim().merge_pull(f"{owner}/{repo}", number)})


@bp.post("/repos/<owner>/<repo>/push")
def push(owner: str, repo: str) -> Response:
    data = _body()
    sha = sim().push(f"{owner}/{repo}", data["files"], branch=data.get("branch"), message=data.get("message", "Change"))
    return json_response({"sha": sha}, 201)


@bp.post("/repos/<owner>/<repo>/jobs")
def add_job(owner: str, repo: str) -> Response:
    data = _body()
    job = sim().add_job(f"{owner}/{repo}", name=data.get("name", "build"), labels=data.get("labels", ["self-hosted"]),
                        status=data.get("status", "queued"), conclusion=data.get("conclusion"),
                        run_id=data.get("run_id"))
    return json_response({"id": job.id, "run_id": job.run_id}, 201)


@bp.post("/webhook")
def configure_webhook() -> Response:
    data = _body()
    sim().deliveries.configure(data["url"], data["secret"])
    return json_response({}, 200)


@bp.post("/webhooks")
def send_webhook() -> Response:
    """Send `payload` (or a workflow_job payload built for `job_id` + `action` in `repo`) to a URL."""
    data = _body()
    simulator = sim()
    payload = data.get("payload")
    if payload is None:
        repo = simulator.repo(data["repo"])
        payload = events.workflow_job(simulator, api_url(), repo.full_name, repo.jobs[int(data["job_id"])],
                                      data["action"])
    deliveries = simulator.deliveries
    url, secret = data.get("url") or deliveries.url, data.get("secret") or deliveries.secret
    if not url or not secret:
        raise ApiError(422, "no webhook URL/secret given or configured")
    delivery = deliveries.send(url, data.get("event", "workflow_job"), payload, secret)
    return json_response({"id": delivery.id, "guid": delivery.guid, "status_code": delivery.status_code}, 201)


@bp.get("/requests")
def requests_log() -> Response:
    return json_response([{"method": r.method, "path": r.path, "status": r.status, "at": r.at, "auth": r.auth}
                          for r in sim().requests])
