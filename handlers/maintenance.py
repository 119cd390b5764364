"""Retention: trim the delivery and job indexes past their retention (the records themselves expire by TTL)."""

from __future__ import annotations

from handlers.runtime import current
from runnerguard.retention import trim_all


def trim() -> int:
    rt = current()
    return trim_all(rt.redis, rt.settings, now=rt.clock())


def warm_dashboard() -> int:
    """Fold settled time buckets into the dashboard's stored summaries ahead of time (the scheduler runs it), so a
    person opening the dashboard never pays for folding a week of a large history: the render stays warm."""
    from handlers.web.dashboard_data import pool_views

    rt = current()
    return len(pool_views(rt.redis, rt.policy, now=rt.clock()))
