"""Read API for admins: jobs, pools, one delivery."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request

from config.policy import NAME_RE
from runnerguard.domain import timeparse
from runnerguard.errors import InvalidInput
from runnerguard.store import causes, jobstore
from runnerguard.store import watchdog as watchdog_store
from runnerguard.store.prewarm_stats import cache_rows
from runnerguard.web.auth import require_admin
from runnerguard.web.openapi import OPENAPI
from runnerguard.web.state import state

bp = Blueprint("admin", __name__, url_prefix="/api")
DAY = 86400
MAX_LIMIT = 5000


def parse_since(raw: str | None) -> float | None:
    """ISO 8601 with a zone, or relative ("24h"); the same rules as the delivery filters."""
    return timeparse.parse_when(raw, "since", now=time.time())


def parse_limit(raw: str | None, default: int = 500) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


@bp.get("/jobs")
@require_admin
def list_jobs() -> Response:
    web = state()
    records = jobstore.find(
        web.redis, repo=request.args.get("repo") or None, pool=request.args.get("pool") or None,
        since=parse_since(request.args.get("since")), limit=parse_limit(request.args.get("limit")),
    )
    marks = watchdog_store.load_many(web.redis, [(r["repo_id"], r["job_id"]) for r in records])
    return jsonify(jobs=[{**jobstore.public(r), "watchdog": mark} for r, mark in zip(records, marks, strict=True)])


@bp.get("/pools")
@require_admin
def list_pools() -> Response:
    web = state()
    now = time.time()
    declared = web.policy.all_pools
    rows = []
    for pool in declared:
        window = web.policy.failure_rate_for(pool.name).window_seconds
        finished, failed = jobstore.window_counts(web.redis, pool.name, now - DAY)
        finished_w, failed_w = jobstore.window_counts(web.redis, pool.name, now - window)
        rows.append({
            "name": pool.name,
            "labels": list(pool.labels),
            "hosts": list(pool.hosts),
            "fallback": pool.fallback,
            "finished_24h": finished,
            "failed_24h": failed,
            "failure_rate_24h": round(failed / finished, 4) if finished else None,
            # every failed job of the 24 h by its cause (code failures included: they do not count toward the rate)
            "failed_by_cause": causes.counts_by_cause(web.redis, pool.name, now - DAY),
            "window_seconds": window,
            "finished_window": finished_w,
            "failed_window": failed_w,
        })
    return jsonify(pools=rows)


@bp.get("/caches")
@require_admin
def list_caches() -> Response:
    """One row per cache and host: state, hits, misses, errors, bytes, hit rate."""
    web = state()
    host = request.args.get("host") or None
    if host is not None and not NAME_RE.fullmatch(host):
        raise InvalidInput("host must be a runner host name")
    expected = [(c.name, h) for c in web.policy.caches for p in web.policy.pools if p.name in c.pools
                for h in p.hosts]
    return jsonify(caches=cache_rows(web.redis, host, expected=expected))


@bp.get("/openapi.json")
def openapi() -> Response:
    """The admin API's description; open, since it holds no secret."""
    return jsonify(OPENAPI)
