"""Gather the dashboard's figures: one read of each pool's job times feeds its charts and its scorecard rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis
from markupsafe import Markup

from config import Policy
from runnerguard.domain import charts, scorecard
from runnerguard.domain import watchdog as watchdog_rules
from runnerguard.domain.timeline import format_time
from runnerguard.queue import inspect
from runnerguard.services import reports as report_data
from runnerguard.store import delivery_query, job_windows, jobstore, prewarm_stats, rollback_state
from runnerguard.store import watchdog as watchdog_store
from runnerguard.web import svg

DAY = 86400
FAILURE_STEP = 3 * 3600  # a rolling-24h point every 3 hours: 56 points a week, 112 ZCOUNTs
LATEST = 15
FAILED_SHOWN = 15


@dataclass
class PoolView:
    name: str
    threshold: float
    failure_chart: Markup
    queue_chart: Markup
    run_chart: Markup
    running_chart: Markup
    rows: list[scorecard.Row] = field(default_factory=list)


def pool_views(client: redis.Redis, policy: Policy, *, now: float) -> list[PoolView]:
    since = now - scorecard.WEEK
    views = []
    for pool, (parts, rows) in report_data.scorecard_by_pool(client, policy, now=now).items():
        threshold = policy.failure_rate_for(pool).threshold
        points = [since + i * FAILURE_STEP for i in range(1, int(scorecard.WEEK // FAILURE_STEP) + 1)]
        failure = charts.Series("24 h failure rate", tuple(job_windows.failure_rate_series(client, pool, points)))
        span: dict[str, Any] = {"since": parts[0].start if parts else since, "until": now}
        views.append(PoolView(
            name=pool,
            threshold=threshold,
            failure_chart=svg.line_chart(f"{pool}: 24 h failure rate", [failure], fmt=svg.pct_fmt, y_max=1.0,
                                         hline=threshold, hline_label=f"rollback threshold {threshold:.0%}",
                                         **span),
            queue_chart=svg.line_chart(f"{pool}: queue wait", charts.queue_series(parts), fmt=svg.seconds_fmt,
                                       **span),
            run_chart=svg.line_chart(f"{pool}: run time", charts.run_series(parts), fmt=svg.seconds_fmt,
                                     hline=scorecard.BUILD_TIME_TARGET, hline_label="30 min target", **span),
            running_chart=svg.line_chart(f"{pool}: jobs running at once", [charts.running_series(parts)],
                                         fmt=lambda v: f"{v:.0f}", hline=scorecard.CONCURRENCY_TARGET,
                                         hline_label="the seed plans for 3-4", **span),
            rows=rows,
        ))
    return views


def cache_rows(client: redis.Redis) -> list[dict[str, Any]]:
    rows = prewarm_stats.cache_rows(client)
    for row in rows:
        row["bar"] = svg.bar(row["hit_rate"], target=scorecard.CACHE_HIT_TARGET)
    return rows


def rollbacks(client: redis.Redis) -> list[dict[str, Any]]:
    return [{**s.public(), "updated": format_time(s.updated_at)} for s in rollback_state.list_states(client)]


def latest_jobs(client: redis.Redis) -> list[dict[str, Any]]:
    records = jobstore.find(client, limit=LATEST)
    marks = watchdog_store.load_many(client, [(r["repo_id"], r["job_id"]) for r in records])
    return [{**jobstore.public(r), "watchdog": watchdog_rules.line(mark)}
            for r, mark in zip(records, marks, strict=True)]


def recent_deliveries(client: redis.Redis) -> list[dict[str, Any]]:
    return [{**d.summary(), "received": format_time(d.received_at)}
            for d in delivery_query.latest(client, LATEST)]


def failed_tasks(client: redis.Redis, queues: tuple[str, ...]) -> list[dict[str, Any]]:
    """The newest entries of every queue's failed registry, with the delivery each one served."""
    return [{"queue": f.queue, "id": f.id, "guid": f.guid, "task": f.task, "ended": format_time(f.ended_at),
             "error": f.error} for f in inspect.failed_tasks(client, queues, limit=FAILED_SHOWN)]
