"""Pre-warm on `queued`: the central worker turns the job into work items for the hosts that serve its pools.

The runner hosts' agents fetch them over HTTP (runnerguard/web/agent.py); nothing here runs on a runner host.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from config import Policy
from runnerguard.domain.events import WorkflowJobEvent
from runnerguard.domain.timeline import PayloadError
from runnerguard.services import hosts
from runnerguard.store.deliveries import Delivery

log = logging.getLogger("runnerguard.prewarm")


def prewarm(delivery: Delivery, *, redis: redis.Redis, policy: Policy, clock: Callable[[], float]) -> int:
    """Work items for this queued job, at most once per (host, job, cache or command) whatever the replays."""
    try:
        event = WorkflowJobEvent.parse(delivery.payload())
    except (PayloadError, ValueError):
        return 0  # a payload we cannot read warms nothing; the timeline task reports it
    created = hosts.make_work(redis, policy, event, now=clock())
    log.info("prewarm work", extra={"delivery_id": delivery.guid, "job_id": event.job_id, "status": str(created)})
    return created
