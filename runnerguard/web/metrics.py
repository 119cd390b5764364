"""GET /metrics: Prometheus text; open unless METRICS_TOKEN is set (it carries no secrets)."""

from __future__ import annotations

import time

from flask import Blueprint, Response, request

from runnerguard.queue import inspect
from runnerguard.services import reports as report_data
from runnerguard.store import hosts, jobstore, metrics, prewarm_stats, rollback_state
from runnerguard.web import prometheus
from runnerguard.web.auth import bearer_ok
from runnerguard.web.state import WebState, state

bp = Blueprint("metrics", __name__)
DAY = 86400
NO_CREDENTIALS = "missing Authorization: Bearer token (METRICS_TOKEN is set)\n"
WRONG_CREDENTIALS = "invalid metrics token\n"


def collect(web: WebState, *, now: float) -> prometheus.Scrape:
    """Read everything a scrape shows; the gauges are computed here, at scrape time."""
    rates: dict[str, float | None] = {}
    for pool in report_data.pool_names(web.redis, web.policy):
        finished, failed = jobstore.window_counts(web.redis, pool, now - DAY)
        rates[pool] = failed / finished if finished else None
    return prometheus.Scrape(
        counters=metrics.counters(web.redis),
        pool_failure_rates=rates,
        rollback_states=[(s.pool, s.repo, s.state) for s in rollback_state.list_states(web.redis)],
        rollback_state_names=rollback_state.STATES,
        prewarm_rows=prewarm_stats.cache_rows(web.redis),
        queues=inspect.queue_rows(web.redis, web.settings.queues),
        hosts=[h.public() for h in hosts.list_statuses(web.redis, web.policy, now=now)],
    )


@bp.get("/metrics")
def scrape() -> Response:
    web = state()
    token = web.settings.metrics_token
    if token:
        header = request.headers.get("Authorization")
        if not header:
            return Response(NO_CREDENTIALS, 401, {"WWW-Authenticate": 'Bearer realm="metrics"'},
                            content_type="text/plain")
        if not bearer_ok(token, header):
            return Response(WRONG_CREDENTIALS, 403, content_type="text/plain")
    body = prometheus.render(collect(web, now=time.time()))
    return Response(body, 200, content_type=prometheus.CONTENT_TYPE)
