"""Re-queue the tasks of recorded deliveries that no RQ job will run any more.

A worker serving several queues takes a job with BLPOP and registers it as started in a later command: a worker
killed, a Redis crash or a Sentinel failover between the two (only the pop made it to the AOF or the replica) leaves
the job's hash saying "queued" in no queue (runnerguard/queue/orphans.py), and the delivery's task recorded queued,
which nothing would ever retry. The delivery log knows better than RQ: such a job is pushed back on its queue (the
same job, so a second sweep finds it queued and leaves it), and a task whose job is gone altogether is enqueued again
under its own job id. Only the lost tasks run again, never the delivery's finished ones; the tasks are idempotent,
so a rare false alarm costs one more run, never a change.
"""

from __future__ import annotations

import logging

import redis

from runnerguard.queue import orphans, tasks
from runnerguard.queue.dispatch import Dispatcher, Plan
from runnerguard.store import deliveries
from runnerguard.store.delivery_query import DeliveryFilter, scan

log = logging.getLogger("runnerguard.lost_tasks")
LOOK_BACK = 2 * 3600
# A task runs within seconds; one waiting for a retry keeps its RQ job (scheduled). Ten minutes without either
# is not a busy queue, it is a lost job (RUNNERGUARD_LOST_TASK_GRACE_SECONDS).
GRACE = 600
LIMIT = 200


def unfinished(delivery: deliveries.Delivery) -> list[str]:
    """Tasks that may still have to run: queued, or failed with perhaps a retry to come (its job says which)."""
    return [t for t in delivery.tasks
            if (state := delivery.task_states.get(t, deliveries.QUEUED)) == deliveries.QUEUED
            or state.startswith(deliveries.FAILED)]


def lost_tasks(client: redis.Redis, delivery: deliveries.Delivery) -> list[str]:
    """The delivery's tasks that no RQ job will run: gone while recorded queued, or orphaned (queued in no queue)."""
    found = _lost(client, [delivery])
    return [task for guid, task, _ in found if guid == delivery.guid]


def _lost(client: redis.Redis, found: list[deliveries.Delivery]) -> list[tuple[str, str, orphans.Unrunnable]]:
    by_job: dict[str, tuple[deliveries.Delivery, str]] = {}
    for delivery in found:
        for task in unfinished(delivery):
            by_job[tasks.job_id_for(delivery.guid, task)] = (delivery, task)
    out = []
    unrunnable = orphans.unrunnable(client, by_job)
    done_since = _done_since(client, [by_job[job.job_id][0].guid for job in unrunnable if job.why == orphans.MISSING])
    for job in unrunnable:
        delivery, task = by_job[job.job_id]
        if job.why == orphans.MISSING and task in done_since.get(delivery.guid, ()):
            continue
        recorded_queued = delivery.task_states.get(task, deliveries.QUEUED) == deliveries.QUEUED
        # A failed task whose job is gone was failed for good long ago (failed jobs are kept 14 days): not lost.
        if job.why == orphans.ORPHANED or recorded_queued:
            out.append((delivery.guid, task, job))
    return out


def _done_since(client: redis.Redis, guids: list[str]) -> dict[str, set[str]]:
    """The tasks of these deliveries done by now. A delivery task's success write deletes its job, right after its
    done mark: one that finished between the delivery scan and the job check looks gone. Read after the check, its
    mark shows."""
    unique = list(dict.fromkeys(guids))
    return {guid: {t for t, state in states.items() if state == deliveries.DONE}
            for guid, states in zip(unique, deliveries.states_many(client, unique), strict=True)}


def requeue_lost(client: redis.Redis, dispatcher: Dispatcher, *, now: float, grace: float = GRACE) -> list[str]:
    """Deliveries received between LOOK_BACK and `grace` ago with a lost task: those tasks queued again; their
    GUIDs (at most LIMIT deliveries a call)."""
    candidates = [d for d in scan(client, DeliveryFilter(since=now - LOOK_BACK, until=now - grace))
                  if unfinished(d)]
    requeued: dict[str, list[str]] = {}
    for guid, task, job in _lost(client, candidates):
        if guid not in requeued and len(requeued) >= LIMIT:
            break
        if job.why == orphans.ORPHANED:
            orphans.requeue_orphan(client, job)
        elif not _enqueue_again(client, dispatcher, guid, job.job_id):
            continue
        requeued.setdefault(guid, []).append(task)
    for guid, lost in requeued.items():
        log.warning("re-queued lost tasks", extra={"delivery_id": guid, "task": ",".join(lost)})
    return list(requeued)


def _enqueue_again(client: redis.Redis, dispatcher: Dispatcher, guid: str, job_id: str) -> bool:
    """The task's job under its own id, as routed today; False when the delivery is gone or no longer routes it."""
    delivery = deliveries.load(client, guid)
    if delivery is None:
        return False
    try:
        payload = delivery.payload()
    except ValueError:
        payload = {}
    plan = dispatcher.plan(guid, delivery.event, delivery.action, payload if isinstance(payload, dict) else {})
    jobs = [j for j in plan.jobs if j.job_id == job_id]
    if not jobs:
        log.warning("lost task no longer routed", extra={"delivery_id": guid, "task": job_id})
        return False
    pipe = client.pipeline(transaction=True)
    pipe.multi()  # the job's hash and its push in one MULTI, as the intake writes them
    Plan((), tuple(jobs)).enqueue_on(pipe)
    pipe.execute()
    return True
