"""Admin API over the delivery log: list, show, replay one, bulk replays."""

from __future__ import annotations

import base64
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from runnerguard.domain.timeline import format_time
from runnerguard.errors import NotFound
from runnerguard.services import replay
from runnerguard.store import deliveries, replays
from runnerguard.store.delivery_query import DeliveryFilter, QueryError, page
from runnerguard.web.auth import require_admin
from runnerguard.web.state import state

bp = Blueprint("deliveries", __name__, url_prefix="/api")
MAX_PAGE = 500


def _limit() -> int:
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise QueryError(f"limit must be a whole number from 1 to {MAX_PAGE}")
    return int(raw)


def _row(delivery: deliveries.Delivery) -> dict[str, Any]:
    row = delivery.summary()
    row["received_at_iso"] = format_time(delivery.received_at)
    return row


@bp.get("/deliveries")
@require_admin
def list_deliveries() -> Response:
    query = DeliveryFilter.from_mapping(request.args.to_dict())
    items, cursor = page(state().redis, query, cursor=request.args.get("cursor") or None, limit=_limit())
    return jsonify(deliveries=[_row(d) for d in items], next=cursor)


@bp.get("/deliveries/<guid>")
@require_admin
def show_delivery(guid: str) -> tuple[Response, int]:
    web = state()
    delivery = deliveries.load(web.redis, guid) if len(guid) <= 64 else None
    if delivery is None:
        return jsonify(error="no such delivery"), 404
    row = _row(delivery)
    row["headers"] = {
        "X-GitHub-Event": delivery.event, "X-GitHub-Delivery": delivery.guid, "X-GitHub-Hook-ID": delivery.hook_id,
        "X-GitHub-Hook-Installation-Target-Type": delivery.target_type,
        "X-GitHub-Hook-Installation-Target-ID": delivery.target_id,
    }
    try:
        row["payload"] = delivery.payload()
    except ValueError:
        row["payload_base64"] = base64.b64encode(delivery.body).decode()
    row["attempts"] = deliveries.attempts(web.redis, guid)
    return jsonify(row), 200


@bp.post("/deliveries/<guid>/replay")
@require_admin
def replay_delivery(guid: str) -> tuple[Response, int]:
    web = state()
    if len(guid) > 64:
        raise NotFound("no such delivery")
    queued = replay.replay_one(web.redis, web.intake.dispatcher, guid)
    return jsonify(delivery=guid, queued=queued), 202


@bp.post("/replays")
@require_admin
def create_replay() -> tuple[Response, int]:
    body = request.get_json(silent=True)
    if body is None and request.get_data():
        raise QueryError("body must be a JSON object of filters")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise QueryError("body must be a JSON object of filters")
    query = DeliveryFilter.from_mapping(body)
    started = replay.create_bulk(state().redis, query, now=time.time())
    return jsonify(id=started["id"], state=started["state"]), 202


@bp.get("/replays/<replay_id>")
@require_admin
def show_replay(replay_id: str) -> Response:
    return jsonify(replays.status(state().redis, replay_id[:64]))


@bp.delete("/replays/<replay_id>")
@require_admin
def cancel_replay(replay_id: str) -> Response:
    return jsonify(replay.cancel(state().redis, replay_id[:64]))
