"""Record the timeline of every workflow job: queue wait, run time, conclusion, per pool and repo."""

from __future__ import annotations

from collections.abc import Callable

import redis

from config import Policy, Settings
from runnerguard.domain.events import WorkflowJobEvent
from runnerguard.domain.pools import pools_for
from runnerguard.domain.timeline import PayloadError
from runnerguard.store import deliveries, jobstore
from runnerguard.store.deliveries import Delivery


def record_job(delivery: Delivery, *, redis: redis.Redis, settings: Settings, policy: Policy,
               clock: Callable[[], float]) -> bool:
    try:
        payload = delivery.payload()
    except ValueError as exc:
        raise PayloadError(f"body is not JSON: {exc}") from None
    event = WorkflowJobEvent.parse(payload)
    jobstore.upsert(
        redis,
        event.snapshot(),
        # The delivery's own received time, not the processing time, so a replay changes nothing.
        seen_at=delivery.received_at,
        pools=pools_for(event.labels, policy.pools),
        rule=policy.rollback.failure_rate.counting,
        retention_seconds=settings.job_retention_seconds,
        now=clock(),
        # Its route queues the cause task (runnerguard/queue/routing.py), which counts a failed job with its cause.
        failed_counted_later=True,
        # The delivery's "done" goes in the same atomic write as the timeline: one round trip fewer per event.
        also=lambda pipe: deliveries.mark_task_on(pipe, delivery.guid, "timings", deliveries.DONE, now=clock()),
    )
    return True
