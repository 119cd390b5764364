"""The notice outbox: every Notice emitted, in order, kept a while (a Redis stream, trimmed to a bounded length)."""

from __future__ import annotations

import orjson
import redis

from runnerguard.domain.notices import Notice
from runnerguard.store import keys

KEPT = 10_000


def append(client: redis.Redis, notice: Notice) -> str:
    """Record a notice; its id (the stream entry id) orders notices and names the delivery task's work."""
    entry_id = client.xadd(keys.NOTICES, {"notice": orjson.dumps(notice.to_dict())}, maxlen=KEPT, approximate=True)
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def load(client: redis.Redis, entry_id: str) -> Notice | None:
    rows: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(  # type: ignore[assignment]
        keys.NOTICES, entry_id, entry_id, count=1)
    if not rows:
        return None
    return Notice.from_dict(orjson.loads(rows[0][1][b"notice"]))


def since(client: redis.Redis, after_id: str = "-", count: int = 500) -> list[tuple[str, Notice]]:
    """Notices after `after_id` (exclusive; "-" for the oldest), oldest first."""
    start = "-" if after_id == "-" else f"({after_id}"
    rows: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(  # type: ignore[assignment]
        keys.NOTICES, start, "+", count=count)
    return [(rid.decode(), Notice.from_dict(orjson.loads(fields[b"notice"]))) for rid, fields in rows]
