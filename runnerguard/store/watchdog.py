"""What the job watchdog did to a job (issue #15): when it asked GitHub to cancel or force-cancel, and why.

Kept apart from the job record, which is rebuilt from its deliveries on every merge; recorded *before* the GitHub
call, so a call is made at most once per job across replays, restarts and workers.
"""

from __future__ import annotations

from typing import Any

import redis

from runnerguard.store import keys

TTL = 30 * 86400


def load(client: redis.Redis, repo_id: int, job_id: int) -> dict[str, Any] | None:
    """{"cancelled_at": float, "forced_at": float | None, "reason": str, ...} or None when the watchdog never acted."""
    raw: dict[bytes, bytes] = client.hgetall(keys.watchdog(repo_id, job_id))  # type: ignore[assignment]
    if not raw:
        return None
    out: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
    for name in ("cancelled_at", "forced_at", "rerun_at"):
        if name in out:
            out[name] = float(out[name])
    return out


def claim(client: redis.Redis, repo_id: int, job_id: int, action: str, *, at: float, reason: str = "") -> bool:
    """Record `action` ("cancelled_at", "forced_at", "rerun_at") once; True only for the first claim."""
    key = keys.watchdog(repo_id, job_id)
    pipe = client.pipeline(transaction=True)
    pipe.hsetnx(key, action, repr(at))
    if reason:
        pipe.hsetnx(key, "reason", reason)
    pipe.expire(key, TTL)
    first = pipe.execute()[0]
    return bool(first)
