"""Gather the dashboard's figures: one read of each pool's job times feeds its charts and its scorecard rows."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import redis
from markupsafe import Markup

from config import Policy
from runnerguard.domain import charts, rules, scorecard
from runnerguard.domain import watchdog as watchdog_rules
from runnerguard.domain.links import GITHUB_WEB, safe_link
from runnerguard.domain.pool_status import PoolStatus, status_for
from runnerguard.domain.timeline import format_time
from runnerguard.queue import inspect
from runnerguard.services import reports as report_data
from runnerguard.store import causes, delivery_query, job_windows, jobstore, prewarm_stats, rollback_state
from runnerguard.store import watchdog as watchdog_store
from runnerguard.web import svg

DAY = 86400
FAILURE_STEP = 3 * 3600  # a rolling-24h point every 3 hours: 56 points a week, 3 script calls (job_windows)
LATEST = 15
FAILED_SHOWN = 15
GITHUB_ONLY = (GITHUB_WEB,)  # links to github.com only, when the caller names no GitHub host


@dataclass
class PoolView:
    name: str
    threshold: float
    runners: int
    build_target: int
    failure_now: str
    failure_chart: Markup
    queue_chart: Markup
    run_chart: Markup
    running_chart: Markup
    rows: list[scorecard.Row] = field(default_factory=list)
    # 24 h: failures by cause, the counted rate beside the code's, and the user steps failing most (issue #14)
    causes: dict[str, int] = field(default_factory=dict)
    counted_rate: float | None = None
    code_rate: float | None = None
    top_steps: list[tuple[str, int]] = field(default_factory=list)


def pool_views(client: redis.Redis, policy: Policy, *, now: float) -> list[PoolView]:
    since = now - scorecard.WEEK
    views = []
    for pool, (parts, rows) in report_data.scorecard_by_pool(client, policy, now=now).items():
        rule = policy.failure_rate_for(pool)
        threshold, targets = rule.threshold, policy.targets_for(pool)
        runners = targets.peak_concurrency
        points = [since + i * FAILURE_STEP for i in range(1, int(scorecard.WEEK // FAILURE_STEP) + 1)]
        window = rules.human_duration(rule.window_seconds)
        rates = tuple(job_windows.failure_rate_series(client, pool, points, rule.window_seconds))
        failure = charts.Series(f"{window} failure rate", rates)
        latest = next((v for _, v in reversed(rates) if v is not None), None)
        span: dict[str, Any] = {"since": parts[0].start if parts else since, "until": now}
        views.append(PoolView(
            name=pool,
            threshold=threshold,
            runners=runners,
            build_target=targets.build_time,
            failure_now="no finished job" if latest is None else svg.pct_fmt(latest),
            failure_chart=svg.line_chart(f"{pool}: {window} failure rate", [failure], fmt=svg.pct_fmt, y_max=1.0,
                                         hline=threshold, hline_label=f"rollback threshold {threshold:.0%}",
                                         mark_last=True, **span),
            queue_chart=svg.line_chart(f"{pool}: queue wait", charts.queue_series(parts), fmt=svg.seconds_fmt,
                                       **span),
            run_chart=svg.line_chart(f"{pool}: run time", charts.run_series(parts), fmt=svg.seconds_fmt,
                                     hline=targets.build_time,
                                     hline_label=f"{svg.seconds_fmt(targets.build_time)} target", **span),
            running_chart=svg.line_chart(f"{pool}: jobs running at once", [charts.running_series(parts)],
                                         fmt=lambda v: f"{v:g}", hline=runners, y_max=_whole_top(parts, runners),
                                         hline_label=f"{runners} runner{'s' if runners != 1 else ''}", **span),
            rows=rows,
            **cause_figures(client, pool, now=now),
        ))
    return views


def cause_figures(client: redis.Redis, pool: str, *, now: float) -> dict[str, Any]:
    finished, failed = jobstore.window_counts(client, pool, now - DAY)
    by_cause = causes.counts_by_cause(client, pool, now - DAY)
    return {"causes": by_cause, "counted_rate": failed / finished if finished else None,
            "code_rate": by_cause.get("code", 0) / finished if finished else None,
            "top_steps": causes.top_failing_steps(client, pool, now - DAY, 3)}


def _whole_top(parts: list[Any], runners: int) -> float:
    """An even top for a count axis, so its three ticks (0, half, top) are whole numbers."""
    highest = max([runners, *(p.peak for p in parts)])
    return float(2 * ((highest + 2) // 2))


def statuses(client: redis.Redis, policy: Policy, *, now: float, app_configured: bool,
             web_bases: tuple[str, ...]) -> list[PoolStatus]:
    """Each pool's status line: its failure rate now (one script call) and its rollback states."""
    by_pool: dict[str, list[dict[str, Any]]] = {}
    for state in rollback_state.list_states(client):
        by_pool.setdefault(state.pool, []).append(state.public())
    lines = []
    for name in report_data.pool_names(client, policy):
        pool = policy.find_pool(name)
        rule = policy.failure_rate_for(name)
        finished, failed = jobstore.window_counts(client, name, now - rule.window_seconds)
        decision = rules.failure_rate(name, finished=finished, failed=failed, window_seconds=rule.window_seconds,
                                      threshold=rule.threshold, min_jobs=rule.min_jobs)
        line = status_for(name, decision, by_pool.get(name, []), fallback=pool.fallback if pool else "ubuntu-latest",
                          app_configured=app_configured, failure_target=policy.targets_for(name).failure_rate)
        # A link is rendered only when it is a GitHub page (or one of this service's own paths).
        safe = tuple(link for link in line.links
                     if (link.href.startswith("/") and not link.href.startswith("//"))
                     or safe_link(link.href, web_bases))
        lines.append(replace(line, links=safe))
    return lines


def cache_rows(client: redis.Redis) -> list[dict[str, Any]]:
    rows = prewarm_stats.cache_rows(client)
    for row in rows:
        row["bar"] = svg.bar(row["hit_rate"], target=scorecard.CACHE_HIT_TARGET)
    return rows


def rollbacks(client: redis.Redis, web_bases: tuple[str, ...] = GITHUB_ONLY) -> list[dict[str, Any]]:
    rows = []
    for s in rollback_state.list_states(client):
        row = {**s.public(), "updated": format_time(s.updated_at)}
        row["pr_url"], row["restore_pr_url"] = safe_link(s.pr_url, web_bases), safe_link(s.restore_pr_url, web_bases)
        rows.append(row)
    return rows


def latest_jobs(client: redis.Redis, web_bases: tuple[str, ...] = GITHUB_ONLY) -> list[dict[str, Any]]:
    """The newest jobs, each with its GitHub job page when the payload's `html_url` is one (else no link)."""
    records = jobstore.find(client, limit=LATEST)
    marks = watchdog_store.load_many(client, [(r["repo_id"], r["job_id"]) for r in records])
    return [{**jobstore.public(r), "watchdog": watchdog_rules.line(mark),
             "link": safe_link(r.get("html_url"), web_bases),
             "queued": _duration(r.get("queue_seconds")), "ran": _duration(r.get("run_seconds"))}
            for r, mark in zip(records, marks, strict=True)]


def _duration(seconds: object) -> str:
    return svg.seconds_fmt(float(seconds)) if isinstance(seconds, int | float) else ""


def recent_deliveries(client: redis.Redis) -> list[dict[str, Any]]:
    return [{**d.summary(), "received": format_time(d.received_at)}
            for d in delivery_query.latest(client, LATEST)]


def failed_tasks(client: redis.Redis, queues: tuple[str, ...]) -> list[dict[str, Any]]:
    """The newest entries of every queue's failed registry, with the delivery each one served."""
    return [{"queue": f.queue, "id": f.id, "guid": f.delivery, "task": f.task, "ended": format_time(f.ended_at),
             "error": f.error, "about": f.guid if f.delivery is None else None}
            for f in inspect.failed_tasks(client, queues, limit=FAILED_SHOWN)]
