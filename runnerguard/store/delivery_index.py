"""The delivery time index: which deliveries arrived when, oldest or newest first, across two layouts.

Since issue #18 each hour has a list of its own (`keys.delivery_bucket`), one packed entry per delivery (~27 bytes:
a kind byte, the received time as a double, the GUID as 16 raw bytes), and a small zset names the hours that have a
bucket. The list is also how the deliveries leave: they have no TTL each, and `trim` deletes an hour's deliveries,
then its list, once the hour is past the retention (the previous release's lists expired with their last delivery,
whose TTL they shared). The global zset before it (`keys.DELIVERIES_BY_TIME`, guid ->
received_at, ~134 bytes per entry once a skiplist) is still read and trimmed until it is empty.
A list keeps the order of arrival, not of received time (two web processes interleave): readers sort each hour,
which is why the buckets are hours and not days.
"""

from __future__ import annotations

import heapq
import logging
import struct
from collections.abc import Iterator

import redis
from redis.client import Pipeline

from runnerguard.errors import Permanent
from runnerguard.store import keys

BUCKET_SECONDS = 3600
LEGACY_BATCH = 500
TRIM_BATCH = 500  # delivery keys per UNLINK: a busy hour (~12,500 deliveries at 100 k jobs a day) in 25 commands
log = logging.getLogger("runnerguard.store")
_TIME = struct.Struct(">d")
UUID_KIND, TEXT_KIND = b"u", b"t"  # GUID as 16 raw bytes (GitHub's), or as its text (hand-made and test ids)


class IndexCorrupted(Permanent):
    """A stored index entry cannot be read; the message names the bucket."""


Entry = tuple[float, str]  # (received_at, guid): ordered as the legacy zset orders equal scores, by name


def hour_of(received_at: float) -> int:
    return int(received_at // BUCKET_SECONDS)


def pack(guid: str, received_at: float) -> bytes:
    # Only the canonical form (lower-case, dashed: what the intake makes of GitHub's ids) is packed as 16 bytes; any
    # other spelling is kept as written. Checked without uuid.UUID: this runs in the request.
    compact = guid.replace("-", "")
    if len(guid) == 36 and len(compact) == 32 and guid[8] == guid[13] == guid[18] == guid[23] == "-":
        try:
            raw = bytes.fromhex(compact)
        except ValueError:
            raw = b""
        if len(raw) == 16 and raw.hex() == compact:
            return UUID_KIND + _TIME.pack(received_at) + raw
    return TEXT_KIND + _TIME.pack(received_at) + guid.encode()


def unpack(raw: bytes, *, where: str = "index") -> Entry:
    kind, rest = raw[:1], raw[9:]
    try:
        if kind == UUID_KIND and len(rest) == 16:
            # str(uuid.UUID(bytes=rest)), 5x faster: a page of a busy hour formats every entry of the hour.
            h = rest.hex()
            return _TIME.unpack_from(raw, 1)[0], f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        if kind == TEXT_KIND and rest:
            return _TIME.unpack_from(raw, 1)[0], rest.decode()
    except (struct.error, UnicodeDecodeError):
        pass
    raise IndexCorrupted(f"delivery index {where}: entry {raw[:40]!r} is not one this version wrote")


def add_on(pipe: Pipeline, guid: str, received_at: float) -> None:
    """Queue the index writes of one delivery: its entry and its hour in the hour set."""
    hour = hour_of(received_at)
    bucket = keys.delivery_bucket(hour)
    pipe.rpush(bucket, pack(guid, received_at))
    # The list is what the trim deletes this delivery by: it must not expire first. A list the previous release
    # began this hour carries an expiry (its deliveries had theirs); the first delivery of this release clears it.
    pipe.persist(bucket)
    pipe.zadd(keys.DELIVERY_HOURS, {str(hour): hour})


def _bucket(client: redis.Redis, hour: int, low: float, high: float, reverse: bool) -> list[Entry]:
    rows: list[bytes] = client.lrange(keys.delivery_bucket(hour), 0, -1)  # type: ignore[assignment]
    where = keys.delivery_bucket(hour)
    found = [e for e in (unpack(r, where=where) for r in rows) if low <= e[0] <= high]
    found.sort(reverse=reverse)
    return found


def _buckets(client: redis.Redis, low: float, high: float, reverse: bool) -> Iterator[Entry]:
    low_h = hour_of(low) if low != float("-inf") else "-inf"
    high_h = hour_of(high) if high != float("inf") else "+inf"
    hours: list[bytes]
    if reverse:
        hours = client.zrevrangebyscore(keys.DELIVERY_HOURS, high_h, low_h)  # type: ignore[assignment]
    else:
        hours = client.zrangebyscore(keys.DELIVERY_HOURS, low_h, high_h)  # type: ignore[assignment]
    for hour in hours:
        yield from _bucket(client, int(hour), low, high, reverse)


def _legacy(client: redis.Redis, low: float, high: float, reverse: bool) -> Iterator[Entry]:
    offset = 0
    while True:
        rows: list[tuple[bytes, float]]
        if reverse:
            rows = client.zrevrangebyscore(  # type: ignore[assignment]
                keys.DELIVERIES_BY_TIME, high, low, start=offset, num=LEGACY_BATCH, withscores=True)
        else:
            rows = client.zrangebyscore(  # type: ignore[assignment]
                keys.DELIVERIES_BY_TIME, low, high, start=offset, num=LEGACY_BATCH, withscores=True)
        if not rows:
            return
        offset += len(rows)
        for member, score in rows:
            yield float(score), member.decode()


def entries(client: redis.Redis, *, low: float | None = None, high: float | None = None,
            reverse: bool = False) -> Iterator[Entry]:
    """(received_at, guid) of every indexed delivery with low <= received_at <= high, in (time, guid) order."""
    lo = float("-inf") if low is None else low
    hi = float("inf") if high is None else high
    yield from heapq.merge(_legacy(client, lo, hi, reverse), _buckets(client, lo, hi, reverse), reverse=reverse)


def count(client: redis.Redis) -> int:
    """How many entries the index holds (both layouts; entries of expired deliveries until they are trimmed)."""
    hours: list[bytes] = client.zrange(keys.DELIVERY_HOURS, 0, -1)  # type: ignore[assignment]
    pipe = client.pipeline(transaction=False)
    pipe.zcard(keys.DELIVERIES_BY_TIME)
    for hour in hours:
        pipe.llen(keys.delivery_bucket(int(hour)))
    return sum(int(n) for n in pipe.execute())


def trim(client: redis.Redis, *, retention_seconds: int, now: float) -> int:
    """Drop what is past retention: legacy zset members one by one (their deliveries expire by their own TTL), and
    each hour once its end is past it: the deliveries its list names, then the list, then the hour. A trim stopped
    halfway (a crash, Redis away) leaves the list, so the next one deletes the rest; deleting twice is harmless."""
    cutoff = now - retention_seconds
    removed = int(client.zremrangebyscore(keys.DELIVERIES_BY_TIME, "-inf", cutoff))
    past: list[bytes] = client.zrangebyscore(keys.DELIVERY_HOURS, "-inf", hour_of(cutoff) - 1)  # type: ignore[assignment]
    for hour in (int(h) for h in past):
        removed += _trim_hour(client, hour)
    return removed


def _trim_hour(client: redis.Redis, hour: int) -> int:
    bucket = keys.delivery_bucket(hour)
    rows: list[bytes] = client.lrange(bucket, 0, -1)  # type: ignore[assignment]
    guids = []
    for row in rows:
        try:
            guids.append(unpack(row, where=bucket)[1])
        except IndexCorrupted:
            # No id to delete by; the entry goes with its list (a delivery it named, if any, is left behind).
            log.warning("delivery index: unreadable entry dropped by the trim", extra={"bucket": bucket})
    for start in range(0, len(guids), TRIM_BATCH):
        client.unlink(*[keys.delivery(g) for g in guids[start:start + TRIM_BATCH]])
    pipe = client.pipeline(transaction=True)
    pipe.delete(bucket)
    pipe.zrem(keys.DELIVERY_HOURS, str(hour))
    pipe.execute()
    return len(rows)
