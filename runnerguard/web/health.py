"""GET /healthz (the process is up) and GET /readyz (Redis answers and takes writes)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from runnerguard import __version__
from runnerguard.store.redis_health import write_refusal
from runnerguard.web.state import state

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok", version=__version__)


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    # A write, not a PING: a Redis at maxmemory (noeviction) answers PING and refuses every delivery.
    refusal = write_refusal(state().redis)
    if refusal == "down":
        return jsonify(status="unavailable", redis="down"), 503
    if refusal is not None:
        return jsonify(status="unavailable", redis="refusing writes", reason=refusal), 503
    return jsonify(status="ready", redis="up"), 200
