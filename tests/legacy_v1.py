"""The delivery format v1 as the code before the compact v2 wrote it (copied from commit b60bb2a), for migration tests.

The body compressed in 64-byte chunks `zb0..` with its dictionary id in `zd`, the metadata in named fields, an
`attempt:<repr(at)>:<task>` field per task mark, and the guid in the global zset `rg:deliveries`.
"""

from __future__ import annotations

import json
import time

import redis

from runnerguard.store import keys
from runnerguard.store.body_codec import BodyCodec
from runnerguard.store.deliveries import Delivery

CHUNK = 64


def record(client: redis.Redis, delivery: Delivery, *, retention_seconds: int, codec: BodyCodec | None = None) -> None:
    dict_id, frame = (codec or BodyCodec(client)).compress(delivery.body)
    mapping: dict[str, str | bytes | float | int] = {
        "event": delivery.event, "received_at": delivery.received_at, "tasks": json.dumps(list(delivery.tasks)),
        "zd": dict_id, **{f"zb{n}": frame[start:start + CHUNK] for n, start in enumerate(range(0, len(frame), CHUNK))},
    }
    optional = {"action": delivery.action, "hook_id": delivery.hook_id, "target_type": delivery.target_type,
                "target_id": delivery.target_id, "installation_id": delivery.installation_id, "repo": delivery.repo}
    mapping.update({k: v for k, v in optional.items() if v is not None})
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.delivery(delivery.guid), mapping=mapping)  # type: ignore[arg-type]
    pipe.expire(keys.delivery(delivery.guid), retention_seconds)
    pipe.zadd(keys.DELIVERIES_BY_TIME, {delivery.guid: delivery.received_at})
    pipe.execute()


def mark_task(client: redis.Redis, guid: str, task: str, state: str, *, error: str | None = None,
              now: float | None = None) -> None:
    now = time.time() if now is None else now
    value = f"failed: {error[:500]}" if state == "failed" and error else state
    short_error = (error or "")[:500]
    attempt = f"{state}\t{short_error}" if short_error else state
    client.hset(keys.delivery(guid), mapping={f"task:{task}": value, f"attempt:{now!r}:{task}": attempt})
