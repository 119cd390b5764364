"""A time index kept as one small sorted set per 10-minute bucket instead of one sorted set of the whole history.

Why: a sorted set of more than 128 members is a skiplist, ~120 bytes a member; one of up to 128 (Redis's
zset-max-listpack-entries) is a listpack, ~30 bytes a member. A bucket of a pool's jobs holds fewer than that up
to ~18,000 jobs a day in the pool; a busier pool's buckets become skiplists (what one whole-history set costs,
plus ~100 bytes a bucket). Retention is each bucket's expiry (its end plus the retention), not a trim per write.

Reads give what one sorted set gave (ZCOUNT, ZRANGE BYSCORE, newest first), exactly at the edges: the buckets a
range covers, each asked for the same score range. The previous release's whole-history set (`legacy`) is read
beside the buckets until its entries age out; every write takes the member out of it, so the two never both
hold a job.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.client import Pipeline

WIDTH = 600
# How far past now a reader looks for scores: GitHub's clock and ours may disagree; a job is never dated later.
FUTURE = 86400
CHUNK = 144  # buckets read per round trip when walking the history (a day)
# Where a walk of the whole history stops when no trim has said how far back retention goes (see history_floor).
DEFAULT_HISTORY = 31 * 86400


@dataclass(frozen=True)
class TimeIndex:
    bucket: Callable[[int], str]  # a bucket's start (epoch seconds, a multiple of WIDTH) -> its key
    legacy: str  # the whole-history sorted set the previous release wrote under the index's name

    def key(self, score: float) -> str:
        return self.bucket(start_of(score))

    def keys(self, low: float, high: float) -> list[str]:
        """The buckets holding scores in [low, high], oldest first."""
        return [self.bucket(start) for start in range(start_of(low), start_of(high) + 1, WIDTH)]


def start_of(score: float) -> int:
    return int(score // WIDTH) * WIDTH


def add(pipe: Pipeline, index: TimeIndex, member: str, score: float, *, retention_seconds: int) -> None:
    key = index.key(score)
    pipe.zadd(key, {member: score})
    # the bucket's last member ages out `retention_seconds` after the bucket ends; a bucket already past its
    # retention is gone at once (what a trim right after the write did)
    pipe.expireat(key, start_of(score) + WIDTH + retention_seconds)
    pipe.zrem(index.legacy, member)


def remove(pipe: Pipeline, index: TimeIndex, member: str, score: float) -> None:
    pipe.zrem(index.key(score), member)
    pipe.zrem(index.legacy, member)


def count(client: redis.Redis, index: TimeIndex, low: float, high: float | None, *, now: float,
          floor: float) -> int:
    """Members with low <= score <= high (None: no upper bound), as ZCOUNT on one sorted set. No bucket before
    `floor` is read (none is left: see history_floor)."""
    top = high if high is not None else now + FUTURE
    pipe = client.pipeline(transaction=False)
    bound = "+inf" if high is None else high
    for key in [*index.keys(max(low, floor), top), index.legacy]:
        pipe.zcount(key, low, bound)
    return sum(int(n) for n in pipe.execute())


def pairs(client: redis.Redis, index: TimeIndex, low: float, high: float | None, *, now: float, floor: float
          ) -> list[tuple[bytes, float]]:
    """(member, score) with low <= score <= high, ascending, as ZRANGE BYSCORE WITHSCORES on one sorted set."""
    top = high if high is not None else now + FUTURE
    bound = "+inf" if high is None else high
    pipe = client.pipeline(transaction=False)
    for key in [*index.keys(max(low, floor), top), index.legacy]:
        # through execute_command: zrangebyscore's per-score conversion costs more than the query (dashboards)
        pipe.execute_command("ZRANGE", key, low, bound, "BYSCORE", "WITHSCORES")  # type: ignore[no-untyped-call]
    *buckets, legacy = (_pairs(raw) for raw in pipe.execute())
    merged = [pair for bucket in buckets for pair in bucket]  # buckets are in score order already
    if legacy:
        merged = list(heapq.merge(merged, legacy, key=lambda pair: pair[1]))
    return merged


def _pairs(raw: list[Any]) -> list[tuple[bytes, float]]:
    """A ZRANGE ... WITHSCORES reply as (member, score) pairs: RESP3 sends pairs, RESP2 a flat list."""
    if raw and isinstance(raw[0], list | tuple):
        return [(m, float(v)) for m, v in raw]
    return list(zip(raw[0::2], map(float, raw[1::2]), strict=True))


def newest_first(client: redis.Redis, index: TimeIndex, low: float | None, *, now: float, floor: float,
                 page: int) -> Iterator[tuple[float, str]]:
    """(score, member) with score >= low (None: the whole history, back to `floor`), newest first, read lazily."""
    stop = max(low, floor) if low is not None else floor
    return heapq.merge(_buckets_descending(client, index, low, stop, now=now),
                       whole_descending(client, index.legacy, low, page), key=lambda pair: -pair[0])


def oldest_first(client: redis.Redis, index: TimeIndex, since: float, *, now: float, floor: float,
                 page: int) -> Iterator[tuple[float, str]]:
    """(score, member) with score >= since, oldest first, read lazily."""
    return heapq.merge(_buckets_ascending(client, index, since, max(since, floor), now=now),
                       whole_ascending(client, index.legacy, since, page), key=lambda pair: pair[0])


def _buckets_descending(client: redis.Redis, index: TimeIndex, low: float | None, stop: float, *, now: float
                        ) -> Iterator[tuple[float, str]]:
    starts = list(range(start_of(now + FUTURE), start_of(stop) - 1, -WIDTH))
    # The future (rarely anything) in one round trip, then from now back an hour at first, twice as much each time:
    # the newest few jobs of a busy pool are not paid for with a day of its members.
    sizes = [len(range(start_of(now + FUTURE), start_of(now), -WIDTH))]
    while sum(sizes) < len(starts):
        sizes.append(min(CHUNK, 6 * 2 ** (len(sizes) - 1)))
    at = 0
    for size in sizes:
        pipe = client.pipeline(transaction=False)
        for start in starts[at:at + size]:
            pipe.zrevrangebyscore(index.bucket(start), "+inf", "-inf" if low is None else low, withscores=True)
        at += size
        for bucket in cast(list[list[tuple[bytes, float]]], pipe.execute()):
            yield from ((float(score), member.decode()) for member, score in bucket)


def _buckets_ascending(client: redis.Redis, index: TimeIndex, since: float, start: float, *, now: float
                       ) -> Iterator[tuple[float, str]]:
    starts = list(range(start_of(start), start_of(now + FUTURE) + 1, WIDTH))
    for at in range(0, len(starts), CHUNK):
        pipe = client.pipeline(transaction=False)
        for begin in starts[at:at + CHUNK]:
            pipe.zrangebyscore(index.bucket(begin), since, "+inf", withscores=True)
        for bucket in cast(list[list[tuple[bytes, float]]], pipe.execute()):
            yield from ((float(score), member.decode()) for member, score in bucket)


def whole_descending(client: redis.Redis, key: str, low: float | None, page: int) -> Iterator[tuple[float, str]]:
    """(score, member) of one whole sorted set with score >= low, newest first, a page at a time."""
    offset = 0
    while True:
        raw = cast(list[tuple[bytes, float]], client.zrevrangebyscore(
            key, "+inf", "-inf" if low is None else low, start=offset, num=page, withscores=True))
        yield from ((float(score), member.decode()) for member, score in raw)
        if len(raw) < page:
            return
        offset += page


def whole_ascending(client: redis.Redis, key: str, since: float, page: int) -> Iterator[tuple[float, str]]:
    """(score, member) of one whole sorted set with score >= since, oldest first, a page at a time."""
    offset = 0
    while True:
        raw = cast(list[tuple[bytes, float]], client.zrangebyscore(
            key, since, "+inf", start=offset, num=page, withscores=True))
        yield from ((float(score), member.decode()) for member, score in raw)
        if len(raw) < page:
            return
        offset += page


def trim(pipe: Pipeline, index: TimeIndex, *, since: float, cutoff: float) -> None:
    """Retention after it was shortened (buckets expire by the retention they were written with): drop the
    buckets from `since` to the one holding `cutoff`, and that one's members up to it."""
    for start in range(start_of(since), start_of(cutoff), WIDTH):
        pipe.delete(index.bucket(start))
    pipe.zremrangebyscore(index.key(cutoff), "-inf", cutoff)
