"""Retention: trim the delivery and job indexes past their retention (the records themselves expire by TTL)."""

from __future__ import annotations

import redis

from config import Settings
from runnerguard.store import deliveries, jobstore


def trim(client: redis.Redis, settings: Settings, *, now: float) -> int:
    removed = deliveries.trim(client, retention_seconds=settings.delivery_retention_seconds, now=now)
    return removed + jobstore.trim_indexes(client, retention_seconds=settings.job_retention_seconds, now=now)
