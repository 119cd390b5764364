"""Retention: trim the delivery index past its retention (records themselves expire by TTL)."""

from __future__ import annotations

from handlers.runtime import current
from runnerguard import deliveries


def trim() -> int:
    rt = current()
    return deliveries.trim(rt.redis, retention_seconds=rt.settings.delivery_retention_seconds, now=rt.clock())
