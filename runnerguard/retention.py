"""Retention that needs no write Redis could refuse: index trims only (ZREMRANGEBYSCORE), so it runs when full."""

from __future__ import annotations

import redis

from config import Settings
from runnerguard import deliveries, jobstore


def trim_all(client: redis.Redis, settings: Settings, *, now: float) -> int:
    """Drop delivery and job index entries past retention (the records expire by TTL, which Redis does when full)."""
    removed = deliveries.trim(client, retention_seconds=settings.delivery_retention_seconds, now=now)
    return removed + jobstore.trim_indexes(client, retention_seconds=settings.job_retention_seconds, now=now)
