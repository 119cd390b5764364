"""Work items per runner host: created once per (host, job, cache or command), offered under a lease, done once."""

from __future__ import annotations

import json
import secrets
from typing import Any

import redis

from runnerguard.store import keys

DEFAULT_LEASE_SECONDS = 600
ONCE_TTL = 7 * 86400  # a delivery replayed within a week makes no new work (recovery looks back 3 days)
MAX_ITEMS_PER_CLAIM = 20

# KEYS: once, items, ready, wake, owners. ARGV: id, item JSON, once TTL, host.
_CREATE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[4])
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4])
redis.call('RPUSH', KEYS[4], '1')
redis.call('EXPIRE', KEYS[4], 60)
return 1
"""
# KEYS: items, ready, leases. ARGV: now, max items. Expired leases first (they waited longest), then new items.
_CLAIM = """
local now = tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
while #ids < tonumber(ARGV[2]) do
  local id = redis.call('LPOP', KEYS[2])
  if not id then break end
  ids[#ids + 1] = id
end
local out = {}
for _, id in ipairs(ids) do
  local item = redis.call('HGET', KEYS[1], id)
  if item then
    local lease = cjson.decode(item)['lease_seconds']
    redis.call('ZADD', KEYS[3], now + lease, id)
    out[#out + 1] = item
  else
    redis.call('ZREM', KEYS[3], id)
  end
end
return out
"""
# KEYS: items, leases, ready, owners. ARGV: id.
_DONE = """
local item = redis.call('HGET', KEYS[1], ARGV[1])
if not item then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('LREM', KEYS[3], 0, ARGV[1])
return item
"""


def _script(client: redis.Redis, source: str) -> Any:
    # register_script only hashes the source; the script is sent once (EVALSHA, then EVAL on NOSCRIPT)
    return client.register_script(source)


def create(client: redis.Redis, host: str, *, job_id: int, kind: str, name: str, now: float,
           lease_seconds: int = DEFAULT_LEASE_SECONDS) -> bool:
    """Queue one item for the host, unless this (job, kind, name) was queued for it before; True if created."""
    item_id = secrets.token_hex(12)
    item = {"id": item_id, "kind": kind, "name": name, "job_id": job_id, "lease_seconds": lease_seconds,
            "created_at": now}
    created = _script(client, _CREATE)(
        keys=[keys.work_once(host, f"{kind}:{name}:{job_id}"), keys.work_items(host), keys.work_ready(host),
              keys.work_wake(host), keys.WORK_OWNERS],
        args=[item_id, json.dumps(item), ONCE_TTL, host])
    return bool(created)


def claim(client: redis.Redis, host: str, *, now: float, limit: int = MAX_ITEMS_PER_CLAIM) -> list[dict[str, Any]]:
    """Items to offer now (new ones and those whose lease ran out), each leased from now."""
    raw = _script(client, _CLAIM)(keys=[keys.work_items(host), keys.work_ready(host), keys.work_leases(host)],
                                  args=[now, limit])
    return [json.loads(item) for item in raw]


def owner(client: redis.Redis, item_id: str) -> str | None:
    raw = client.hget(keys.WORK_OWNERS, item_id)
    return raw.decode() if isinstance(raw, bytes) else raw


def finish(client: redis.Redis, host: str, item_id: str) -> dict[str, Any] | None:
    """Take the item off the host's work (None if it is not, or no longer, the host's)."""
    raw = _script(client, _DONE)(keys=[keys.work_items(host), keys.work_leases(host), keys.work_ready(host),
                                       keys.WORK_OWNERS], args=[item_id])
    return json.loads(raw) if raw else None


def pending(client: redis.Redis, host: str) -> int:
    """Items of the host not done yet (offered or not)."""
    return int(client.hlen(keys.work_items(host)))


def wait_for_work(blocking: redis.Redis, host: str, seconds: float) -> None:
    """Block up to `seconds` until work is created for the host (BLPOP on its wake list; its own connection)."""
    if seconds > 0:
        blocking.blpop([keys.work_wake(host)], timeout=seconds)


def drop_older_than(client: redis.Redis, host: str, before: float) -> int:
    """Forget items created before `before` (a host that never polls must not pile up a year of work)."""
    stale = [item_id.decode() if isinstance(item_id, bytes) else str(item_id)
             for item_id, raw in client.hgetall(keys.work_items(host)).items()
             if float(json.loads(raw).get("created_at", 0)) < before]
    if not stale:
        return 0
    pipe = client.pipeline(transaction=True)
    pipe.hdel(keys.work_items(host), *stale)
    pipe.hdel(keys.WORK_OWNERS, *stale)
    pipe.zrem(keys.work_leases(host), *stale)
    for item_id in stale:
        pipe.lrem(keys.work_ready(host), 0, item_id)
    pipe.execute()
    return len(stale)
