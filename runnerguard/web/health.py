"""GET /healthz (the process is up) and GET /readyz (Redis answers)."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify

from runnerguard import __version__
from runnerguard.web.state import state

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok", version=__version__)


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    try:
        state().redis.ping()
    except redis.RedisError:
        return jsonify(status="unavailable", redis="down"), 503
    return jsonify(status="ready", redis="up"), 200
