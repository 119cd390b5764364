"""Where the job indexes are, and every job's member in created order (no index of all jobs is kept whole).

A pool's jobs are in its created and started indexes, each split into 10-minute buckets (store/time_buckets.py);
its finished and failed indexes (the failure rate's) are bucketed the same way, by completed_at.
The job index (keys.JOBS_BY_CREATED) holds the jobs of no pool, and, until they age out, the pool jobs the
previous release put there too. The jobs in created order are those indexes merged, each read lazily; a member
met twice (a job of two pools, an old entry) is given once: its entries share the job's created time, so a set
of the members of the current score suffices.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator
from itertools import islice
from typing import cast

import redis

from runnerguard.store import keys, time_buckets
from runnerguard.store.time_buckets import TimeIndex


def pool_created(pool: str) -> TimeIndex:
    return TimeIndex(lambda start: keys.pool_created_at(pool, start), keys.pool_created(pool))


def pool_started(pool: str) -> TimeIndex:
    return TimeIndex(lambda start: keys.pool_started_at(pool, start), keys.pool_started(pool))


def pool_finished(pool: str) -> TimeIndex:
    """The pool's finished jobs that the failure rate counts, by completed_at."""
    return TimeIndex(lambda start: keys.pool_finished_at(pool, start), keys.pool_finished(pool),
                     keys.pool_finished_buckets(pool))


def pool_failed(pool: str) -> TimeIndex:
    """The pool's jobs that the failure rate counts as failed, by completed_at."""
    return TimeIndex(lambda start: keys.pool_failed_at(pool, start), keys.pool_failed(pool),
                     keys.pool_failed_buckets(pool))


def history_floor(client: redis.Redis, now: float) -> float:
    """How far back a walk of the whole history goes: where the last trim left nothing older (else a default)."""
    raw = client.get(keys.JOB_HISTORY_FLOOR)
    return float(raw) if raw else now - time_buckets.DEFAULT_HISTORY


def count(client: redis.Redis, index: TimeIndex, low: float, high: float | None) -> int:
    """ZCOUNT low high (None: +inf) over a time-bucketed index."""
    now = time.time()
    return time_buckets.count(client, index, low, high, now=now, floor=history_floor(client, now))


def pairs(client: redis.Redis, index: TimeIndex, low: float, high: float | None) -> list[tuple[bytes, float]]:
    """ZRANGE low high BYSCORE WITHSCORES (None: +inf) over a time-bucketed index."""
    now = time.time()
    return time_buckets.pairs(client, index, low, high, now=now, floor=history_floor(client, now))


def newest_of(client: redis.Redis, index: TimeIndex, low: float, limit: int) -> list[str]:
    """The `limit` newest members with score >= low of a time-bucketed index, newest first."""
    now = time.time()
    newest = time_buckets.newest_first(client, index, low, now=now, floor=history_floor(client, now), page=limit)
    return [member for _, member in islice(newest, limit)]


def pairs_of(client: redis.Redis, key: str) -> list[tuple[bytes, float]]:
    """Every (member, score) of one whole sorted set, ascending."""
    return cast(list[tuple[bytes, float]], client.zrange(key, 0, -1, withscores=True))


def pools_seen(client: redis.Redis) -> list[str]:
    return sorted(m.decode() for m in client.smembers(keys.POOLS_SEEN))  # type: ignore[union-attr]


def newest_first(client: redis.Redis, pools: list[str] | None, low: float | None, page: int) -> Iterator[str]:
    """Members created at or after `low` (None: any time) of the given pools' jobs (None: every job), newest
    first, each once."""
    now = time.time()
    floor = history_floor(client, now)
    streams = [time_buckets.newest_first(client, pool_created(pool), low, now=now, floor=floor, page=page)
               for pool in (pools_seen(client) if pools is None else pools)]
    if pools is None:
        streams.append(time_buckets.whole_descending(client, keys.JOBS_BY_CREATED, low, page))
    return _once(heapq.merge(*streams, key=lambda pair: -pair[0]))


def oldest_first(client: redis.Redis, since: float, page: int) -> Iterator[str]:
    """Members of every job created at or after `since`, oldest first, each once."""
    now = time.time()
    floor = history_floor(client, now)
    streams = [time_buckets.oldest_first(client, pool_created(pool), since, now=now, floor=floor, page=page)
               for pool in pools_seen(client)]
    streams.append(time_buckets.whole_ascending(client, keys.JOBS_BY_CREATED, since, page))
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
