"""The stored formats as the code before issue #18 wrote them (copied from commit 752ba8f), for migration tests.

Deliveries: the raw body in `body`, attempts in a list key of their own; job records: plain JSON.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import redis

from runnerguard.store import keys
from runnerguard.store.deliveries import Delivery

MAX_ATTEMPTS_KEPT = 50
MAX_ERROR_CHARS = 500
ATTEMPTS_TTL = 30 * 86400


def record(client: redis.Redis, delivery: Delivery, *, retention_seconds: int) -> None:
    pipe = client.pipeline(transaction=True)
    key = keys.delivery(delivery.guid)
    mapping: dict[str, Any] = {
        "event": delivery.event,
        "body": delivery.body,
        "received_at": delivery.received_at,
        "tasks": json.dumps(list(delivery.tasks)),
    }
    optional = {
        "action": delivery.action,
        "hook_id": delivery.hook_id,
        "target_type": delivery.target_type,
        "target_id": delivery.target_id,
        "installation_id": delivery.installation_id,
        "repo": delivery.repo,
    }
    mapping.update({k: v for k, v in optional.items() if v is not None})
    pipe.hset(key, mapping=mapping)
    pipe.expire(key, retention_seconds)
    pipe.zadd(keys.DELIVERIES_BY_TIME, {delivery.guid: delivery.received_at})
    pipe.execute()


def mark_task(client: redis.Redis, guid: str, task: str, state: str, *, error: str | None = None,
              now: float) -> None:
    pipe = client.pipeline(transaction=True)
    value = f"failed: {error[:MAX_ERROR_CHARS]}" if state == "failed" and error else state
    attempt = json.dumps({"task": task, "state": state, "at": now, "error": (error or "")[:MAX_ERROR_CHARS] or None})
    pipe.hset(keys.delivery(guid), f"task:{task}", value)
    pipe.rpush(keys.delivery_attempts(guid), attempt)
    pipe.ltrim(keys.delivery_attempts(guid), -MAX_ATTEMPTS_KEPT, -1)
    pipe.expire(keys.delivery_attempts(guid), ATTEMPTS_TTL)
    pipe.execute()


def write_job(client: redis.Redis, record: dict[str, Any], *, retention_seconds: int) -> None:
    client.set(keys.job(record["repo_id"], record["job_id"]), orjson.dumps(record), ex=retention_seconds)
