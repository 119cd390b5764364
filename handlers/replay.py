"""Admin replay: run a recorded delivery's handlers again, one at a time or in bulk (an asynchronous task)."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import redis
from rq import Queue

from runnerguard.queue.dispatch import Dispatcher
from runnerguard.store import deliveries, keys
from runnerguard.store.delivery_query import DeliveryFilter, scan

log = logging.getLogger("runnerguard.replay")
REPLAY_QUEUE = "events"
PROGRESS_EVERY = 25
REPLAY_TTL = 7 * 86400
QUEUED, RUNNING, DONE, CANCELLED, FAILED = "queued", "running", "done", "cancelled", "failed"


class NotFound(LookupError):
    pass


def replay_one(client: redis.Redis, dispatcher: Dispatcher, guid: str) -> list[str]:
    """Enqueue the delivery's tasks again (as routed today); returns the task names. Raises NotFound."""
    delivery = deliveries.load(client, guid)
    if delivery is None:
        raise NotFound(guid)
    try:
        payload = delivery.payload()
    except ValueError:
        payload = {}
    number = int(client.incr(keys.REPLAY_COUNTER))  # type: ignore[arg-type]
    # A fresh RQ job id per replay: the first run's job may still sit in the failed registry, for the record.
    plan = dispatcher.plan(guid, delivery.event, delivery.action, payload if isinstance(payload, dict) else {},
                           suffix=f"_r{number}")
    pipe = client.pipeline(transaction=True)
    pipe.multi()  # RQ's enqueue_job would otherwise switch to MULTI after our commands, which redis-py refuses
    deliveries.reset_tasks(pipe, guid, plan.task_names)
    plan.enqueue_on(pipe)
    pipe.execute()
    return list(plan.task_names)


def create_bulk(client: redis.Redis, query: DeliveryFilter, *, now: float | None = None) -> dict[str, Any]:
    """Record a bulk replay and queue the task that runs it; answers its status."""
    replay_id = secrets.token_hex(8)
    now = time.time() if now is None else now
    key = keys.replay(replay_id)
    client.hset(key, mapping={"state": QUEUED, "total": 0, "done": 0, "errors": 0, "filter": query.to_json(),
                              "created_at": now})
    client.expire(key, REPLAY_TTL)
    Queue(REPLAY_QUEUE, connection=client).enqueue(
        run_bulk_replay, replay_id, job_id=f"replay_{replay_id}", job_timeout=3600, result_ttl=0,
    )
    return status(client, replay_id)


def status(client: redis.Redis, replay_id: str) -> dict[str, Any]:
    raw: dict[bytes, bytes] = client.hgetall(keys.replay(replay_id))  # type: ignore[assignment]
    if not raw:
        raise NotFound(replay_id)
    return {
        "id": replay_id,
        "state": raw[b"state"].decode(),
        "total": int(raw.get(b"total", b"0")),
        "done": int(raw.get(b"done", b"0")),
        "errors": int(raw.get(b"errors", b"0")),
        "filter": json.loads(raw.get(b"filter", b"{}")),
    }


def cancel(client: redis.Redis, replay_id: str) -> dict[str, Any]:
    current = status(client, replay_id)
    if current["state"] in (QUEUED, RUNNING):
        client.hset(keys.replay(replay_id), "state", CANCELLED)
    return status(client, replay_id)


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


def run_bulk_replay(replay_id: str) -> None:
    """RQ task: the asynchronous half of POST /api/replays."""
    from handlers import router, runtime  # the composed router imports this module

    rt = runtime.current()
    key = keys.replay(replay_id)
    current = status(rt.redis, replay_id)
    if current["state"] != QUEUED:
        return  # cancelled before it started, or already run (a retried job)
    rt.redis.hset(key, "state", RUNNING)
    query = DeliveryFilter(**current["filter"])

    def progress(total: int, done: int, errors: int) -> bool:
        rt.redis.hset(key, mapping={"total": total, "done": done, "errors": errors})
        return rt.redis.hget(key, "state") != CANCELLED.encode()

    try:
        replay_matching(rt.redis, Dispatcher(rt.redis, router, rt.policy), query, progress=progress)
    except Exception:
        rt.redis.hset(key, "state", FAILED)
        raise
    if rt.redis.hget(key, "state") != CANCELLED.encode():
        rt.redis.hset(key, "state", DONE)
    log.info("bulk replay finished", extra={"task": f"replay {replay_id}"})
