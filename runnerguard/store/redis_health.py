"""Is Redis taking writes? PING answers even when `maxmemory` is reached, so readiness and outage waits write."""

from __future__ import annotations

import redis

from runnerguard.store import keys

PROBE_TTL_MS = 10_000


def write_refusal(client: redis.Redis) -> str | None:
    """None when a small write succeeds; else "down", "out of memory", "read-only" or "refusing writes".

    Out of memory (noeviction) and a read-only replica after a failover both pass by themselves (memory freed,
    a new primary): outages to wait out, not errors to crash on.
    """
    try:
        client.set(keys.WRITE_PROBE, 1, px=PROBE_TTL_MS)
    except (redis.ConnectionError, redis.TimeoutError):
        return "down"
    except redis.exceptions.OutOfMemoryError:
        return "out of memory"
    except redis.exceptions.ReadOnlyError:
        return "read-only"
    except redis.RedisError:
        return "refusing writes"
    return None
