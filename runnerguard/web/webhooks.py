"""POST /webhooks/github: the GitHub App's webhook endpoint."""

from __future__ import annotations

import logging

import orjson
import redis
from flask import Blueprint, Response, jsonify, request

from runnerguard.web.state import state

log = logging.getLogger("runnerguard.intake")
bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks/github")
def receive_webhook() -> tuple[Response, int]:
    web = state()
    # get_data() honours MAX_CONTENT_LENGTH: an oversized body is refused with 413 before it is read in full.
    body = request.get_data(cache=False)
    try:
        result = web.intake.accept(request.headers, body)
    except redis.RedisError as exc:
        # 503 tells GitHub the delivery failed, so it can be redelivered; nothing was half-written (one script).
        guid = request.headers.get("X-GitHub-Delivery", "")[:64]
        log.error("redis unavailable: %s", str(exc)[:200], extra={"delivery_id": guid, "error": type(exc).__name__})
        return jsonify(error="storage unavailable, try again later"), 503
    # gunicorn's access log already has a line per delivery (id, status, duration): an accepted one adds its own only
    # at DEBUG (a second line per delivery cost ~6% of the intake's CPU, bench/bench_wrk.py); a refusal says why.
    log.log(logging.INFO if result.status >= 400 else logging.DEBUG, "webhook",
            extra={"delivery_id": result.delivery_id, "event": result.event, "status": result.status})
    # orjson: this answer is on GitHub's clock (10 s) and on every delivery's path; jsonify costs several times more.
    return Response(orjson.dumps(result.body), status=result.status, mimetype="application/json"), result.status
