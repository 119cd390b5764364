"""Admin replay: run a recorded delivery's handlers again, one at a time or in bulk (an asynchronous task)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

from runnerguard.errors import NotFound
from runnerguard.queue import tasks
from runnerguard.queue.dispatch import Dispatcher
from runnerguard.store import deliveries, replays
from runnerguard.store.delivery_query import DeliveryFilter, scan

log = logging.getLogger("runnerguard.replay")
PROGRESS_EVERY = 25


def replay_one(client: redis.Redis, dispatcher: Dispatcher, guid: str) -> list[str]:
    """Enqueue the delivery's tasks again (as routed today); returns the task names. Raises NotFound."""
    delivery = deliveries.load(client, guid)
    if delivery is None:
        raise NotFound(f"no delivery {guid}")
    try:
        payload = delivery.payload()
    except ValueError:
        payload = {}
    number = replays.next_number(client)
    # A fresh RQ job id per replay: the first run's job may still sit in the failed registry, for the record.
    plan = dispatcher.plan(guid, delivery.event, delivery.action, payload if isinstance(payload, dict) else {},
                           suffix=f"_r{number}")
    pipe = client.pipeline(transaction=True)
    pipe.multi()  # RQ's enqueue_job would otherwise switch to MULTI after our commands, which redis-py refuses
    deliveries.reset_tasks(pipe, guid, plan.task_names)
    plan.enqueue_on(pipe)
    pipe.execute()
    return list(plan.task_names)


def create_bulk(client: redis.Redis, query: DeliveryFilter, *, now: float) -> dict[str, Any]:
    """Record a bulk replay and queue the task that runs it; answers its status."""
    replay_id = replays.create(client, query.to_json(), now=now)
    tasks.enqueue(tasks.BULK_REPLAY, replay_id, connection=client, job_id=f"replay_{replay_id}")
    return replays.status(client, replay_id)


def cancel(client: redis.Redis, replay_id: str) -> dict[str, Any]:
    current = replays.status(client, replay_id)
    if current["state"] in (replays.QUEUED, replays.RUNNING):
        replays.set_state(client, replay_id, replays.CANCELLED)
    return replays.status(client, replay_id)


def replay_matching(
    client: redis.Redis, dispatcher: Dispatcher, query: DeliveryFilter,
    *, progress: Callable[[int, int, int], bool] | None = None,
) -> tuple[int, int]:
    """Replay every delivery matching the filter; `progress(total, done, errors)` returning False stops early."""
    matching = [d.guid for d in scan(client, query)]
    done = errors = 0
    for guid in matching:
        try:
            replay_one(client, dispatcher, guid)
            done += 1
        except NotFound:
            errors += 1  # expired between the scan and now
        if progress is not None and (done + errors) % PROGRESS_EVERY == 0 and not progress(len(matching), done, errors):
            break
    if progress is not None:
        progress(len(matching), done, errors)
    return done, errors


def run_bulk(client: redis.Redis, dispatcher: Dispatcher, replay_id: str) -> None:
    """The asynchronous half of POST /api/replays (a worker runs it)."""
    current = replays.status(client, replay_id)
    if current["state"] != replays.QUEUED:
        return  # cancelled before it started, or already run (a retried job)
    replays.set_state(client, replay_id, replays.RUNNING)
    query = DeliveryFilter(**current["filter"])

    def progress(total: int, done: int, errors: int) -> bool:
        replays.set_progress(client, replay_id, total=total, done=done, errors=errors)
        return replays.state(client, replay_id) != replays.CANCELLED

    try:
        replay_matching(client, dispatcher, query, progress=progress)
    except Exception:
        replays.set_state(client, replay_id, replays.FAILED)
        raise
    if replays.state(client, replay_id) != replays.CANCELLED:
        replays.set_state(client, replay_id, replays.DONE)
    log.info("bulk replay finished", extra={"task": f"replay {replay_id}"})
