"""Admin API for runner hosts: `GET /api/hosts` (statuses), `POST /api/hosts` (a token, once), `DELETE` (revoke)."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request

from runnerguard.errors import InvalidInput
from runnerguard.services import hosts
from runnerguard.store import hosts as host_store
from runnerguard.web.auth import require_admin
from runnerguard.web.state import state

bp = Blueprint("hosts_api", __name__, url_prefix="/api")


@bp.get("/hosts")
@require_admin
def list_hosts() -> Response:
    web = state()
    return jsonify(hosts=[s.public() for s in host_store.list_statuses(web.redis, web.policy, now=time.time())])


@bp.post("/hosts")
@require_admin
def add_host() -> tuple[Response, int]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or set(body) != {"name"}:
        raise InvalidInput('the body must be {"name": "<host name>"} and nothing else')
    created = hosts.add(state().redis, body["name"], now=time.time())
    # The token exists in clear only in this answer: runnerguard keeps its SHA-256.
    return jsonify(name=created.name, token=created.token), 201


@bp.delete("/hosts/<name>")
@require_admin
def revoke_host(name: str) -> Response:
    hosts.revoke(state().redis, name)
    return jsonify(name=name, revoked=True)
