"""Emit a notice: producers call `emit`; it records the notice and queues its delivery (issue #17).

Best effort on purpose: the work that emits (a rollback, a host report) never fails or waits because of a notice;
each notifier gets its own task, retried with backoff (runnerguard/services/notify_delivery.py).
"""

from __future__ import annotations

import logging

import redis

from runnerguard.domain.notices import Notice
from runnerguard.queue import tasks
from runnerguard.store import notices

log = logging.getLogger("runnerguard.notify")


def fan_out_job_id(entry_id: str) -> str:
    return "notify_" + "".join(c if c.isalnum() or c in "_-" else "-" for c in entry_id)


def emit(client: redis.Redis, notice: Notice) -> str:
    """Record the notice in the outbox and queue its delivery; "" when Redis refused (the notice is then lost)."""
    try:
        entry_id = notices.append(client, notice)
    except redis.RedisError as exc:
        log.warning("notice not recorded", extra={"status": notice.event, "error": type(exc).__name__})
        return ""
    try:
        tasks.enqueue(tasks.NOTIFY_FAN_OUT, entry_id, connection=client, job_id=fan_out_job_id(entry_id))
    except Exception as exc:
        log.warning("notice recorded but not queued", extra={"status": notice.event, "error": type(exc).__name__})
    return entry_id
