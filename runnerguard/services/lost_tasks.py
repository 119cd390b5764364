"""Re-queue the tasks of recorded deliveries that no RQ job stands for any more.

A worker serving several queues takes a job with BLPOP and records it as started in a later command: a Redis crash
or failover between the two (only the pop made it to the AOF or the replica) leaves a delivery whose task is
recorded "queued" and no job anywhere, which nothing would ever retry. The delivery log knows better than RQ: every
such task is queued again (the tasks are idempotent, so a rare false alarm costs one more run, never a change).
"""

from __future__ import annotations

import logging

import redis

from runnerguard.queue import tasks
from runnerguard.queue.dispatch import Dispatcher
from runnerguard.services.replay import replay_one
from runnerguard.store import deliveries
from runnerguard.store.delivery_query import DeliveryFilter, scan

log = logging.getLogger("runnerguard.lost_tasks")
LOOK_BACK = 2 * 3600
# A task runs within seconds; one waiting for a retry keeps its RQ job (scheduled). Ten minutes without either
# is not a busy queue, it is a lost job.
GRACE = 600
LIMIT = 200


def lost_tasks(client: redis.Redis, delivery: deliveries.Delivery) -> list[str]:
    """The delivery's tasks still recorded queued whose RQ job no longer exists."""
    queued = [t for t in delivery.tasks if delivery.task_states.get(t, deliveries.QUEUED) == deliveries.QUEUED]
    return [t for t in queued if not tasks.job_exists(tasks.job_id_for(delivery.guid, t), connection=client)]


def requeue_lost(client: redis.Redis, dispatcher: Dispatcher, *, now: float) -> list[str]:
    """Deliveries received between LOOK_BACK and GRACE ago with a lost task: queued again; their GUIDs."""
    requeued: list[str] = []
    for state in (deliveries.QUEUED, deliveries.RUNNING):
        for delivery in scan(client, DeliveryFilter(since=now - LOOK_BACK, until=now - GRACE, state=state)):
            lost = lost_tasks(client, delivery)
            if not lost:
                continue
            replay_one(client, dispatcher, delivery.guid)
            log.warning("re-queued lost tasks", extra={"delivery_id": delivery.guid, "task": ",".join(lost)})
            requeued.append(delivery.guid)
            if len(requeued) >= LIMIT:
                return requeued
    return requeued
