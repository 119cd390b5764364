"""The runner-host agent's API (`/agent/v1/...`): host token auth, config, long-polled work, results, reports."""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from runnerguard.domain import agent_protocol
from runnerguard.domain.hosts import valid_name
from runnerguard.errors import InvalidInput
from runnerguard.services import hosts
from runnerguard.store import host_tokens, work
from runnerguard.web.state import state

bp = Blueprint("agent", __name__, url_prefix="/agent/v1")
log = logging.getLogger("runnerguard.agent")
F = TypeVar("F", bound=Callable[..., Any])
EXTENSION = "runnerguard.agent"
HOST_HEADER = "X-Runnerguard-Host"
MAX_WAIT = 30
DEFAULT_WAIT = 25
WAKE_SLICE = 5.0  # a long poll re-reads the leases this often, so an expired lease is offered again promptly
RETRY_AFTER = "5"
ITEM_ID_MAX = 64


@dataclass
class LongPolls:
    """Per web process: at most `limit` requests hold a thread in a long poll; the rest answer 204 at once (with
    Retry-After), so the threads webhook intake needs are never all waiting on agents. Each poll blocks in Redis
    (BLPOP) on a connection pool of its own, sized to the cap, so polls never starve intake of connections."""

    limit: int
    blocking: redis.Redis
    _held: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self) -> bool:
        with self._lock:
            if self._held >= self.limit:
                return False
            self._held += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._held -= 1


def init_app(app: Flask, *, blocking: redis.Redis, limit: int) -> None:
    """`blocking`: a client of its own for the long polls (app.py builds it with the one connection factory, so
    it follows a Sentinel failover like the rest), with reads longer than the longest poll."""
    app.extensions[EXTENSION] = LongPolls(limit=limit, blocking=blocking)
    app.register_blueprint(bp)


def _polls() -> LongPolls:
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


def _refuse(status: int, message: str) -> tuple[Response, int, dict[str, str]]:
    headers = {"WWW-Authenticate": 'Bearer realm="runnerguard-agent"'} if status == 401 else {}
    if status in (401, 403):
        # Never the presented token; only that a host's request was refused and why.
        log.warning("agent request refused", extra={"status": status})
    return jsonify(error=message), status, headers


def require_host(view: F) -> F:
    """A host token in `Authorization: Bearer`, acting only as its own host (the header must name it)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[len("Bearer "):].strip():
            return _refuse(401, "missing Authorization: Bearer <host token>")
        name = host_tokens.host_for(state().redis, header[len("Bearer "):].strip())
        if name is None:
            return _refuse(401, "unknown or revoked host token")
        claimed = request.headers.get(HOST_HEADER, "")
        if claimed != name:
            return _refuse(403, f"this token acts only as its own host ({HOST_HEADER} must name it)")
        g.agent_host = name
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _body() -> Any:
    """The JSON body, at most 64 KiB (413 beyond, whatever Content-Length claims)."""
    limit = agent_protocol.MAX_BODY_BYTES
    if request.content_length is not None and request.content_length > limit:
        return _TooLarge
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        return _TooLarge
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput("the body must be JSON") from None


_TooLarge = object()
TOO_LARGE = f"the body must be at most {agent_protocol.MAX_BODY_BYTES // 1024} KiB"


@bp.get("/config")
@require_host
def config() -> Response:
    return jsonify(hosts.agent_config(state().policy, g.agent_host))


def _wait() -> int:
    raw = request.args.get("wait")
    if raw is None:
        return DEFAULT_WAIT
    if not raw.isdigit() or not 0 <= int(raw) <= MAX_WAIT:
        raise InvalidInput(f"wait must be a whole number of seconds from 0 to {MAX_WAIT}")
    return int(raw)


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: item[k] for k in ("id", "kind", "name", "job_id", "lease_seconds")}


@bp.get("/work")
@require_host
def fetch_work() -> Response | tuple[str, int, dict[str, str]]:
    """200 with items as soon as there are any, else 204 after `wait` seconds."""
    web, host, wait = state(), g.agent_host, _wait()
    items = work.claim(web.redis, host, now=time.time())
    if items or wait == 0:
        return jsonify(items=[_public(i) for i in items]) if items else ("", 204, {})
    polls = _polls()
    if not polls.enter():
        return "", 204, {"Retry-After": RETRY_AFTER}  # every long-poll slot of this process is taken
    try:
        deadline = time.monotonic() + wait
        while (remaining := deadline - time.monotonic()) > 0:
            work.wait_for_work(polls.blocking, host, min(remaining, WAKE_SLICE))
            items = work.claim(web.redis, host, now=time.time())
            if items:
                return jsonify(items=[_public(i) for i in items])
    finally:
        polls.leave()
    return "", 204, {}


@bp.post("/work/<item_id>/done")
@require_host
def work_done(item_id: str) -> Response | tuple[Response, int]:
    web, host = state(), g.agent_host
    body = _body()
    if body is _TooLarge:
        return jsonify(error=TOO_LARGE), 413
    result = agent_protocol.parse_done(body)
    if len(item_id) > ITEM_ID_MAX or not valid_name(item_id):
        return jsonify(error="no such work item"), 404
    owner = work.owner(web.redis, item_id)
    if owner is None:
        return jsonify(error="no such work item"), 404
    if owner != host:
        log.warning("agent request refused", extra={"status": 403})
        return jsonify(error="this work item is another host's"), 403
    item = work.finish(web.redis, host, item_id)
    if item is None:
        return jsonify(error="no such work item"), 404
    hosts.record_result(web.redis, host, item, result, now=time.time())
    return jsonify(ok=True)


@bp.post("/report")
@require_host
def report() -> Response | tuple[Response, int]:
    web, host = state(), g.agent_host
    body = _body()
    if body is _TooLarge:
        return jsonify(error=TOO_LARGE), 413
    status = hosts.ingest_report(web.redis, web.policy, host, agent_protocol.parse_report(body), now=time.time())
    return jsonify(ok=True, state=status.state, healthy_since=status.healthy_since)
