"""Admin API for rollbacks: their state, a manual rollback, a restore. GitHub work is queued, never done here."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from runnerguard.errors import InvalidInput
from runnerguard.services import admin
from runnerguard.store import rollback_state
from runnerguard.web.auth import require_admin
from runnerguard.web.state import state

bp = Blueprint("rollbacks", __name__, url_prefix="/api")


def _body() -> dict[str, object]:
    body = request.get_json(silent=True) if request.get_data() else {}
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object")
    return body


@bp.get("/rollbacks")
@require_admin
def list_rollbacks() -> Response:
    return jsonify(rollbacks=[s.public() for s in rollback_state.list_states(state().redis)])


@bp.post("/rollbacks")
@require_admin
def open_rollback() -> tuple[Response, int]:
    web = state()
    body = _body()
    pool = body.get("pool")
    if not isinstance(pool, str) or web.policy.find_pool(pool) is None:
        return jsonify(error="pool must name a pool of the policy"), 400
    task = admin.request_rollback(web.redis, web.policy, pool, body.get("repo"), body.get("note", ""))
    return jsonify(pool=pool, repo=body.get("repo"), state="queued", task=task), 202


@bp.post("/rollbacks/<pool>/restore")
@require_admin
def restore(pool: str) -> tuple[Response, int]:
    web = state()
    admin.check_pool(web.policy, pool)
    repo = _body().get("repo")
    task = admin.request_restore(web.redis, web.policy, pool, repo)
    return jsonify(pool=pool, repo=repo, state="queued", task=task), 202
