"""What /setup remembers across web processes: the id of the App it created last (setup is off until a restart)."""

from __future__ import annotations

import redis

from runnerguard.store import keys


def mark_created(client: redis.Redis, app_id: str) -> None:
    client.set(keys.SETUP_CREATED, app_id)


def created_app_id(client: redis.Redis) -> str | None:
    raw = client.get(keys.SETUP_CREATED)
    return raw.decode() if isinstance(raw, bytes) else None
