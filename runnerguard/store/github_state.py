"""What the GitHub client shares between processes in Redis: the per-installation write turn and the
repository -> installation cache. Installation tokens are not here: they stay in each process's memory."""

from __future__ import annotations

import redis
from redis.lock import Lock

from runnerguard.store import keys


def write_lock(client: redis.Redis, installation_id: int, *, timeout: float, blocking_timeout: float) -> Lock:
    lock: Lock = client.lock(keys.github_write_lock(installation_id), timeout=timeout,
                             blocking_timeout=blocking_timeout)
    return lock


def last_write(client: redis.Redis, installation_id: int) -> bytes | None:
    return client.get(keys.github_last_write(installation_id))  # type: ignore[return-value]


def record_write(client: redis.Redis, installation_id: int, at: float, *, ttl: int) -> None:
    client.set(keys.github_last_write(installation_id), repr(at), ex=ttl)


def remember_installation(client: redis.Redis, repo: str, installation_id: int, *, ttl: int) -> None:
    client.set(keys.repo_installation(repo), installation_id, ex=ttl)


def cached_installation(client: redis.Redis, repo: str) -> int | None:
    raw = client.get(keys.repo_installation(repo))
    return int(raw) if raw is not None else None
