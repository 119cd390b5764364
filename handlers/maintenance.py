"""Retention: trim the delivery and job indexes past their retention (the records themselves expire by TTL)."""

from __future__ import annotations

from handlers.runtime import current
from runnerguard import deliveries, jobstore


def trim() -> int:
    rt = current()
    now = rt.clock()
    removed = deliveries.trim(rt.redis, retention_seconds=rt.settings.delivery_retention_seconds, now=now)
    return removed + jobstore.trim_indexes(rt.redis, retention_seconds=rt.settings.job_retention_seconds, now=now)
