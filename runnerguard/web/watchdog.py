"""GET /api/watchdog: each pool's watchdog settings and state (`blocked` where a permission is missing), its latest
actions."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from runnerguard.store import watchdog as store
from runnerguard.web.auth import require_admin
from runnerguard.web.state import state

bp = Blueprint("watchdog", __name__, url_prefix="/api")
RECENT_SHOWN = 50


@bp.get("/watchdog")
@require_admin
def show() -> Response:
    web = state()
    blocked = list(store.blocked(web.redis).values())
    pools = []
    for pool in web.policy.all_pools:
        mine = [b for b in blocked if b.get("pool") in (pool.name, None)]
        watching = pool.max_run_seconds is not None or pool.retry_runner_failures > 0
        pools.append({
            "name": pool.name,
            "max_run_seconds": pool.max_run_seconds,
            "force_after_seconds": pool.force_after_seconds,
            "retry_runner_failures": pool.retry_runner_failures,
            # blocked: GitHub refused a call for a missing permission in one of the pool's repositories
            "state": "blocked" if mine else "watching" if watching else "off",
            "reason": mine[0]["reason"] if mine else None,
        })
    return jsonify(pools=pools, blocked=blocked, recent=store.recent(web.redis, RECENT_SHOWN))
