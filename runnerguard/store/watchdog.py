"""What the job watchdog did to a job (issue #15): when it asked GitHub to cancel or force-cancel, and why.

Kept apart from the job record, which is rebuilt from its deliveries on every merge; recorded *before* the GitHub
call, so a call is made at most once per job across replays, restarts and workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import redis

from runnerguard.store import keys

TTL = 30 * 86400
RECENT_KEPT = 200
_FLOATS = ("cancelled_at", "forced_at", "rerun_at")
# Ask at most every `every` seconds, by the caller's clock (testable); Redis's expiry only cleans up afterwards.
_CHECK = """
local last = redis.call('GET', KEYS[1])
if last and tonumber(ARGV[1]) - tonumber(last) < tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


def load(client: redis.Redis, repo_id: int, job_id: int) -> dict[str, Any] | None:
    """{"cancelled_at": float, "forced_at": float | None, "reason": str, ...} or None when the watchdog never acted."""
    raw: dict[bytes, bytes] = client.hgetall(keys.watchdog(repo_id, job_id))  # type: ignore[assignment]
    return _decode(raw)


def _decode(raw: Mapping[bytes, bytes]) -> dict[str, Any] | None:
    if not raw:
        return None
    out: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
    for name in _FLOATS:
        if name in out:
            out[name] = float(out[name])
    return out


def load_many(client: redis.Redis, jobs: Iterable[tuple[int, int]]) -> list[dict[str, Any] | None]:
    """`load` for many (repo_id, job_id) in one round trip, in order."""
    pipe = client.pipeline(transaction=False)
    for repo_id, job_id in jobs:
        pipe.hgetall(keys.watchdog(repo_id, job_id))
    return [_decode(raw) for raw in pipe.execute()]


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


def release(client: redis.Redis, repo_id: int, job_id: int, action: str) -> None:
    """Undo a claim whose call GitHub refused outright (403, 429): nothing happened, so a later sweep may try again."""
    client.hdel(keys.watchdog(repo_id, job_id), action)


def note(client: redis.Redis, repo_id: int, job_id: int, fields: Mapping[str, str | int | float]) -> None:
    """Facts beside a claim: the pool, GitHub's answer (`cancel_status`, `rerun_error`...)."""
    key = keys.watchdog(repo_id, job_id)
    pipe = client.pipeline(transaction=True)
    pipe.hset(key, mapping={k: str(v) for k, v in fields.items()})
    pipe.expire(key, TTL)
    pipe.execute()


def claim_check(client: redis.Redis, repo_id: int, job_id: int, *, at: float, every: float) -> bool:
    """True when GitHub may be asked about the job now: never asked, or last asked `every` seconds ago or more."""
    check = client.register_script(_CHECK)
    return bool(check(keys=[keys.watchdog_checked(repo_id, job_id)], args=[repr(at), every, int(every) + 86400]))


def set_blocked(client: redis.Redis, repo: str, entry: Mapping[str, Any]) -> bool:
    """Record why the watchdog cannot act in a repository (a missing permission); True when it was not blocked."""
    return bool(client.hset(keys.WATCHDOG_BLOCKED, repo.lower(), orjson.dumps(dict(entry))))


def clear_blocked(client: redis.Redis, repo: str) -> bool:
    return bool(client.hdel(keys.WATCHDOG_BLOCKED, repo.lower()))


def blocked(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """Repository (lower case) -> {"repo", "pool", "action", "permission", "reason", "at"}."""
    raw: dict[bytes, bytes] = client.hgetall(keys.WATCHDOG_BLOCKED)  # type: ignore[assignment]
    return {k.decode(): orjson.loads(v) for k, v in sorted(raw.items())}


def remember(client: redis.Redis, entry: Mapping[str, Any]) -> None:
    """One action taken, for `GET /api/watchdog` (the newest RECENT_KEPT)."""
    pipe = client.pipeline(transaction=False)
    pipe.lpush(keys.WATCHDOG_RECENT, orjson.dumps(dict(entry)))
    pipe.ltrim(keys.WATCHDOG_RECENT, 0, RECENT_KEPT - 1)
    pipe.execute()


def recent(client: redis.Redis, count: int = 50) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in client.lrange(keys.WATCHDOG_RECENT, 0, count - 1)]
