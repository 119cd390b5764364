"""Every job's member in created order, read from the indexes that hold them (no index of all jobs is kept whole).

A job of a pool is in its pool's created index only; the job index (keys.JOBS_BY_CREATED) holds the jobs of no
pool, and, until they age out, the pool jobs the previous release put there too. The jobs in created order are
those indexes merged: each is read a page at a time, and a member met twice (a job of two pools, an old entry) is
given once; its entries share the job's created time, so a set of the members of the current score suffices.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import cast

import redis

from runnerguard.store import keys


def created_indexes(client: redis.Redis) -> list[str]:
    """The job index and every pool's created index."""
    pools = sorted(m.decode() for m in client.smembers(keys.POOLS_SEEN))  # type: ignore[union-attr]
    return [keys.JOBS_BY_CREATED, *(keys.pool_created(pool) for pool in pools)]


def newest_first(client: redis.Redis, indexes: list[str], low: float | str, page: int) -> Iterator[str]:
    """Members created at or after `low` of all `indexes`, newest first, each once."""
    streams = [_descending(client, index, low, page) for index in indexes]
    return _once(heapq.merge(*streams, key=lambda pair: -pair[0]))


def oldest_first(client: redis.Redis, indexes: list[str], since: float, page: int) -> Iterator[str]:
    """Members created at or after `since` of all `indexes`, oldest first, each once."""
    streams = [_ascending(client, index, since, page) for index in indexes]
    return _once(heapq.merge(*streams, key=lambda pair: pair[0]))


def _once(pairs: Iterator[tuple[float, str]]) -> Iterator[str]:
    score: float | None = None
    met: set[str] = set()
    for created, member in pairs:
        if created != score:
            score, met = created, set()
        if member not in met:
            met.add(member)
            yield member


def _descending(client: redis.Redis, index: str, low: float | str, page: int) -> Iterator[tuple[float, str]]:
    offset = 0
    while True:
        raw = cast(list[tuple[bytes, float]],
                   client.zrevrangebyscore(index, "+inf", low, start=offset, num=page, withscores=True))
        yield from ((float(score), member.decode()) for member, score in raw)
        if len(raw) < page:
            return
        offset += page


def _ascending(client: redis.Redis, index: str, since: float, page: int) -> Iterator[tuple[float, str]]:
    offset = 0
    while True:
        raw = cast(list[tuple[bytes, float]],
                   client.zrangebyscore(index, since, "+inf", start=offset, num=page, withscores=True))
        yield from ((float(score), member.decode()) for member, score in raw)
        if len(raw) < page:
            return
        offset += page
