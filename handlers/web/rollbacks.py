"""Admin API for rollbacks: their state, a manual rollback, a restore. GitHub work is queued, never done here."""

from __future__ import annotations

import re

from flask import Blueprint, Response, jsonify, request
from rq import Queue

from handlers.dispatch import GITHUB_QUEUE
from handlers.web.auth import require_admin
from handlers.web.state import state
from runnerguard import rollback_state
from runnerguard.pools import DEFAULT_POOL

bp = Blueprint("rollbacks", __name__, url_prefix="/api")
REPO_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")


def _body() -> dict[str, object]:
    body = request.get_json(silent=True) if request.get_data() else {}
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def _pool_known(name: str) -> bool:
    return any(p.name == name for p in (state().policy.pools or (DEFAULT_POOL,)))


def _repo(value: object, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not REPO_RE.fullmatch(value) or any(p in (".", "..") for p in value.split("/")):
        raise ValueError("repo must look like owner/name")
    return value


@bp.errorhandler(ValueError)
def bad_request(exc: ValueError) -> tuple[Response, int]:
    return jsonify(error=str(exc)), 400


@bp.get("/rollbacks")
@require_admin
def list_rollbacks() -> Response:
    return jsonify(rollbacks=[s.public() for s in rollback_state.list_states(state().redis)])


@bp.post("/rollbacks")
@require_admin
def open_rollback() -> tuple[Response, int]:
    body = _body()
    pool = body.get("pool")
    if not isinstance(pool, str) or not _pool_known(pool):
        return jsonify(error="pool must name a pool of the policy"), 400
    repo = _repo(body.get("repo"), required=False)
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > 500:
        raise ValueError("note must be a string of at most 500 characters")
    job = Queue(GITHUB_QUEUE, connection=state().redis).enqueue(
        "handlers.rollback.manual_rollback_task", pool, repo, note, result_ttl=3600)
    return jsonify(pool=pool, repo=repo, state="queued", task=job.id), 202


@bp.post("/rollbacks/<pool>/restore")
@require_admin
def restore(pool: str) -> tuple[Response, int]:
    if not _pool_known(pool):
        return jsonify(error="no such pool"), 404
    repo = _repo(_body().get("repo"), required=True)
    current = rollback_state.load(state().redis, pool, str(repo))
    if current.state not in (rollback_state.ROLLED_BACK, rollback_state.PR_OPEN):
        return jsonify(error=f"{pool} in {repo} is {current.state}: nothing to restore"), 409
    job = Queue(GITHUB_QUEUE, connection=state().redis).enqueue(
        "handlers.rollback.restore_rollback", pool, repo, result_ttl=3600)
    return jsonify(pool=pool, repo=repo, state="queued", task=job.id), 202
