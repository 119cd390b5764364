"""Bulk replays: their state and progress (a hash per replay, kept a week), and the replay counter."""

from __future__ import annotations

import json
import secrets
from typing import Any

import redis

from runnerguard.errors import NotFound
from runnerguard.store import keys

REPLAY_TTL = 7 * 86400
QUEUED, RUNNING, DONE, CANCELLED, FAILED = "queued", "running", "done", "cancelled", "failed"


def next_number(client: redis.Redis) -> int:
    """A fresh number per replay of one delivery (its RQ job ids must differ from the first run's)."""
    return int(client.incr(keys.REPLAY_COUNTER))


def create(client: redis.Redis, filter_json: str, *, now: float) -> str:
    replay_id = secrets.token_hex(8)
    key = keys.replay(replay_id)
    pipe = client.pipeline(transaction=True)
    pipe.hset(key, mapping={"state": QUEUED, "total": 0, "done": 0, "errors": 0, "filter": filter_json,
                            "created_at": now})
    pipe.expire(key, REPLAY_TTL)
    pipe.execute()
    return replay_id


def status(client: redis.Redis, replay_id: str) -> dict[str, Any]:
    raw: dict[bytes, bytes] = client.hgetall(keys.replay(replay_id))  # type: ignore[assignment]
    if not raw:
        raise NotFound(f"no replay {replay_id}")
    return {
        "id": replay_id,
        "state": raw[b"state"].decode(),
        "total": int(raw.get(b"total", b"0")),
        "done": int(raw.get(b"done", b"0")),
        "errors": int(raw.get(b"errors", b"0")),
        "filter": json.loads(raw.get(b"filter", b"{}")),
    }


def state(client: redis.Redis, replay_id: str) -> str | None:
    raw = client.hget(keys.replay(replay_id), "state")
    return raw.decode() if raw else None  # type: ignore[union-attr]


def set_state(client: redis.Redis, replay_id: str, new: str) -> None:
    client.hset(keys.replay(replay_id), "state", new)


def set_progress(client: redis.Redis, replay_id: str, *, total: int, done: int, errors: int) -> None:
    client.hset(keys.replay(replay_id), mapping={"total": total, "done": done, "errors": errors})
