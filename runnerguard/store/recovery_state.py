"""What delivery recovery remembers: its checkpoint, and which GUIDs it asked GitHub to redeliver, and when."""

from __future__ import annotations

import redis

from runnerguard.store import keys


def checkpoint(client: redis.Redis) -> float | None:
    raw = client.get(keys.RECOVERY_CHECKPOINT)
    return float(raw) if raw else None


def set_checkpoint(client: redis.Redis, value: float) -> None:
    client.set(keys.RECOVERY_CHECKPOINT, value)


def asked_at(client: redis.Redis, guid: str) -> float | None:
    raw = client.get(keys.recovery_asked(guid))
    return float(raw) if raw is not None else None


def mark_asked(client: redis.Redis, guid: str, at: float, *, ttl: int) -> None:
    client.set(keys.recovery_asked(guid), at, ex=ttl)


def unmark_asked(client: redis.Redis, guid: str) -> None:
    client.delete(keys.recovery_asked(guid))
