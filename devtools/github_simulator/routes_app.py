"""App-level endpoints (JWT): the App, installations, access tokens, hook deliveries, rate limit."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, Response, g, request

from devtools.github_simulator import shapes
from devtools.github_simulator.app import api_url, json_response, require_jwt, sim
from devtools.github_simulator.errors import ApiError, bad_credentials
from devtools.github_simulator.state import RATE_LIMIT

bp = Blueprint("sim_app", __name__)


@bp.get("/app")
def get_app() -> Response:
    require_jwt()
    return json_response(shapes.app(sim(), api_url()))


@bp.get("/app/installations")
def list_installations() -> Response:
    require_jwt()
    simulator = sim()
    items = sorted(simulator.installations.values(), key=lambda i: i.id)
    per_page = _int_arg("per_page", 30, 1, 100)
    page = _int_arg("page", 1, 1, 10**6)
    chunk = items[(page - 1) * per_page: page * per_page]
    headers = {}
    if page * per_page < len(items):
        query = urlencode({"per_page": per_page, "page": page + 1})
        headers["Link"] = f'<{api_url()}/app/installations?{query}>; rel="next"'
    return json_response([shapes.installation(simulator, api_url(), i) for i in chunk], headers=headers)


@bp.get("/repos/<owner>/<repo>/installation")
def repo_installation(owner: str, repo: str) -> Response:
    require_jwt()
    simulator = sim()
    return json_response(shapes.installation(simulator, api_url(), simulator.installation_for(f"{owner}/{repo}")))


@bp.post("/app/installations/<int:installation_id>/access_tokens")
def create_token(installation_id: int) -> Response:
    require_jwt()
    simulator = sim()
    installation = simulator.installation(installation_id)
    if installation.suspended:
        raise ApiError(403, "This installation has been suspended")
    token, record = simulator.mint_token(installation_id)
    body = {"token": token, "expires_at": shapes.iso(record.expires_at), "permissions": record.permissions,
            "repository_selection": "selected"}
    return json_response(body, 201)


@bp.get("/app/hook/deliveries")
def list_deliveries() -> Response:
    require_jwt()
    per_page = _int_arg("per_page", 30, 1, 100)
    cursor = request.args.get("cursor")
    status = request.args.get("status")
    try:
        page, next_cursor = sim().deliveries.page(per_page=per_page, cursor=cursor, status=status)
    except ValueError:
        raise ApiError(400, "Invalid cursor") from None
    headers = {}
    if next_cursor:
        query = {"per_page": per_page, "cursor": next_cursor} | ({"status": status} if status else {})
        headers["Link"] = f'<{api_url()}/app/hook/deliveries?{urlencode(query)}>; rel="next"'
    return json_response([shapes.delivery(d, detail=False) for d in page], headers=headers)


@bp.get("/app/hook/deliveries/<int:delivery_id>")
def get_delivery(delivery_id: int) -> Response:
    require_jwt()
    return json_response(shapes.delivery(sim().deliveries.get(delivery_id), detail=True))


@bp.post("/app/hook/deliveries/<int:delivery_id>/attempts")
def redeliver(delivery_id: int) -> Response:
    require_jwt()
    sim().deliveries.redeliver(delivery_id)
    return json_response({}, 202)


@bp.get("/rate_limit")
def rate_limit() -> Response:
    if g.auth is None:
        raise bad_credentials()
    remaining, reset = sim().rate(g.principal)
    rate = {"limit": RATE_LIMIT, "remaining": remaining, "reset": reset, "used": RATE_LIMIT - remaining}
    search = {"limit": 30, "remaining": 30, "reset": reset, "used": 0}
    return json_response({"resources": {"core": rate, "search": search}, "rate": rate})


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        return min(max(int(raw), low), high)
    except ValueError:
        raise ApiError(422, f"Invalid value for {name}") from None
