"""Emit a notice: producers call `emit`; the notifiers deliver what the outbox holds (issue #17)."""

from __future__ import annotations

import logging

import redis

from runnerguard.domain.notices import Notice
from runnerguard.store import notices

log = logging.getLogger("runnerguard.notify")


def emit(client: redis.Redis, notice: Notice) -> str:
    """Record the notice in the outbox (best effort: a notice must never fail the work that emitted it)."""
    try:
        entry_id = notices.append(client, notice)
    except redis.RedisError as exc:
        log.warning("notice not recorded", extra={"status": notice.event, "error": type(exc).__name__})
        return ""
    return entry_id
