"""Time-bucketed indexes answer as one sorted set did, at bucket edges too; the old whole sets are read beside them."""

from __future__ import annotations

import random
import time

import pytest
import redis

from devtools.redis_server import start_redis
from runnerguard.domain.events import parse_workflow_job
from runnerguard.store import job_members, jobstore, keys, time_buckets
from runnerguard.store.time_buckets import WIDTH, TimeIndex
from tests.test_timeline import job_payload
from tests.test_timings import iso, job_events

NOW = float(int(time.time()) // WIDTH * WIDTH)  # a bucket edge
INDEX = TimeIndex(lambda start: f"t:b@{start}", "t:legacy")
RUNNER = {"runner_name": "r", "runner_id": 1, "runner_group_name": "Default"}


def _write(client: redis.Redis, members: dict[str, float], *, retention: int = 86400) -> None:
    pipe = client.pipeline(transaction=True)
    for member, score in members.items():
        time_buckets.add(pipe, INDEX, member, score, retention_seconds=retention)
    pipe.execute()


def test_counts_and_ranges_equal_one_sorted_sets_at_and_around_every_edge(redis_client: redis.Redis) -> None:
    rng = random.Random(18)
    edges = [NOW - k * WIDTH for k in range(6)]
    scores = [e + d for e in edges for d in (-1, -0.5, 0, 0.5, 1, WIDTH / 2)] + [rng.uniform(NOW - 4000, NOW)
                                                                                 for _ in range(60)]
    members = {f"3:{n}": s for n, s in enumerate(scores)}
    _write(redis_client, members)
    redis_client.zadd("t:reference", members)
    bounds = [*edges, *(e + d for e in edges for d in (-1, -0.5, 0.5, 1)), NOW - 4000, NOW + 10]
    ranges = [(low, high) for low in bounds for high in [*bounds, None] if high is None or high >= low]
    for low, high in rng.sample(ranges, 120):
            want = redis_client.zcount("t:reference", low, "+inf" if high is None else high)
            assert time_buckets.count(redis_client, INDEX, low, high, now=NOW, floor=NOW - 86400) == want, (low, high)
            pairs = time_buckets.pairs(redis_client, INDEX, low, high, now=NOW, floor=NOW - 86400)
            reference = redis_client.zrangebyscore("t:reference", low, "+inf" if high is None else high,
                                                   withscores=True)
            assert sorted(pairs) == sorted(reference) and [s for _, s in pairs] == sorted(s for _, s in pairs)
    newest = list(time_buckets.newest_first(redis_client, INDEX, NOW - 2000, now=NOW, floor=NOW - 86400, page=7))
    assert [s for s, _ in newest] == sorted((s for s in scores if s >= NOW - 2000), reverse=True)
    oldest = list(time_buckets.oldest_first(redis_client, INDEX, NOW - 2000, now=NOW, floor=NOW - 86400, page=7))
    assert [s for s, _ in oldest] == sorted(s for s in scores if s >= NOW - 2000)


def test_a_bucket_stays_a_listpack_and_expires_with_the_retention(redis_client: redis.Redis) -> None:
    _write(redis_client, {f"100000002:70000000{n:02}": NOW + n for n in range(100)}, retention=3600)
    key = INDEX.key(NOW)
    assert redis_client.object("encoding", key) == b"listpack"
    assert NOW + WIDTH + 3600 - time.time() - 5 <= redis_client.ttl(key) <= NOW + WIDTH + 3600 - time.time() + 5
    _write(redis_client, {"3:old": NOW - 7200}, retention=3600)  # past its retention when written: not kept
    assert not redis_client.exists(INDEX.key(NOW - 7200))


def test_the_previous_releases_whole_set_is_read_beside_the_buckets_and_emptied_by_writes(
        redis_client: redis.Redis) -> None:
    redis_client.zadd("t:legacy", {"3:1": NOW - 100, "3:2": NOW - 50})
    _write(redis_client, {"3:3": NOW - 10})
    assert time_buckets.count(redis_client, INDEX, NOW - 100, None, now=NOW, floor=NOW - 86400) == 3
    assert [m for m, _ in time_buckets.pairs(redis_client, INDEX, 0, NOW, now=NOW, floor=NOW - 86400)] == [b"3:1", b"3:2", b"3:3"]
    assert [m for _, m in time_buckets.newest_first(redis_client, INDEX, None, now=NOW, floor=NOW - 86400,
                                                     page=1)] == ["3:3", "3:2", "3:1"]
    _write(redis_client, {"3:2": NOW - 50})  # the job written again: in its bucket only
    assert redis_client.zrange("t:legacy", 0, -1) == [b"3:1"]
    assert time_buckets.count(redis_client, INDEX, 0, None, now=NOW, floor=NOW - 86400) == 3


def _upsert(client: redis.Redis, payload: dict, seen_at: float) -> None:  # type: ignore[type-arg]
    jobstore.upsert(client, parse_workflow_job(payload), seen_at=seen_at, pools=["self-hosted"],
                    rule=jobstore.CountingRule(), retention_seconds=30 * 86400, now=time.time())


def test_stuck_queue_counts_starts_exactly_at_the_window_edge(redis_client: redis.Redis) -> None:
    since = NOW - 3 * WIDTH
    for job_id, offset in ((1, -1), (2, 0), (3, 1), (4, WIDTH)):  # one before the edge, one on it, two after
        started = since + offset
        _upsert(redis_client, job_payload("in_progress", id=job_id, created_at=iso(started - 60),
                                          started_at=iso(started), status="in_progress", **RUNNER), started)
    for job_id in (5, 6):  # waiting since before the edge, and since after it
        _upsert(redis_client, job_payload("queued", id=job_id, created_at=iso(since - 10 + (job_id - 5) * 20),
                                          started_at=iso(since - 10 + (job_id - 5) * 20)), since)
    assert jobstore.stuck_counts(redis_client, "self-hosted", since) == (1, 3)
    assert jobstore.created_count(redis_client, "self-hosted", since - 61, since - 60) == 2  # jobs 1 and 2
    assert jobstore.created_count(redis_client, "self-hosted", since - 60, since + WIDTH) == 5  # 2, 3, 4, 5, 6


def test_a_job_whose_created_time_changes_moves_to_its_new_bucket(redis_client: redis.Redis) -> None:
    first = NOW - 5 * WIDTH
    _upsert(redis_client, job_payload("queued", id=9, created_at=iso(first), started_at=iso(first)), first)
    # a later delivery dates it otherwise (a bucket later): the job is counted once, at its new time
    _upsert(redis_client, job_payload("in_progress", id=9, created_at=iso(first + WIDTH), status="in_progress",
                                      started_at=iso(first + WIDTH + 5), **RUNNER), first + 1)
    created = job_members.pool_created("self-hosted")
    assert time_buckets.pairs(redis_client, created, 0, None, now=NOW, floor=NOW - 86400) == [(b"3:9", first + WIDTH)]
    assert [r["job_id"] for r in jobstore.find(redis_client, pool="self-hosted")] == [9]


def test_pool_jobs_the_previous_release_indexed_are_counted_once_and_trimmed(redis_client: redis.Redis) -> None:
    created = NOW - 7200
    # the previous release's whole-history indexes of one job that started, and the same job delivered again now
    redis_client.zadd(keys.pool_created("self-hosted"), {"3:700": created})
    redis_client.zadd(keys.pool_started("self-hosted"), {"3:700": created + 60})
    redis_client.sadd(keys.POOLS_SEEN, "self-hosted")
    assert jobstore.stuck_counts(redis_client, "self-hosted", created) == (0, 1)
    for event in job_events(700, "success", created=created):
        _upsert(redis_client, event, created + 1)
    assert jobstore.stuck_counts(redis_client, "self-hosted", created) == (0, 1)
    assert jobstore.created_count(redis_client, "self-hosted", 0, NOW + WIDTH) == 1
    assert not redis_client.exists(keys.pool_created("self-hosted"), keys.pool_started("self-hosted"))
    # a retention shortened below the job's age: the periodic trim drops its buckets
    assert jobstore.trim_indexes(redis_client, retention_seconds=3600, now=time.time()) >= 2
    assert jobstore.created_count(redis_client, "self-hosted", 0, NOW + WIDTH) == 0
    assert jobstore.stuck_counts(redis_client, "self-hosted", 0) == (0, 0)


def test_index_state_gives_every_index_of_a_pool(redis_client: redis.Redis) -> None:
    created = NOW - 3600
    for event in job_events(800, "failure", created=created):
        _upsert(redis_client, event, created + 1)
    state = jobstore.index_state(redis_client, "self-hosted")
    assert state["created"] == [(b"3:800", created)] and state["started"] == [(b"3:800", created + 60)]
    assert state["finished"] == state["failed"] == [(b"3:800", created + 600)]
    assert state["waiting"] == state["running"] == []


def test_the_bucketed_reads_answer_on_a_full_redis(redis_client: redis.Redis) -> None:
    """The triggers and dashboards read while Redis refuses writes (maxmemory, noeviction): so must the buckets."""
    from tests.test_full_redis import MAXMEMORY, fill  # noqa: PLC0415 - the full-Redis helpers, one test's need
    server = start_redis(maxmemory=MAXMEMORY)
    client = redis.Redis.from_url(server.url)
    try:
        _write(client, {"3:1": NOW - 100, "3:2": NOW - 50})
        fill(client)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("one-more", "x")
        assert time_buckets.count(client, INDEX, NOW - 100, None, now=NOW, floor=NOW - 86400) == 2
        assert [m for m, _ in time_buckets.pairs(client, INDEX, 0, None, now=NOW, floor=NOW - 86400)] == [
            b"3:1", b"3:2"]
    finally:
        client.close()
        server.stop()
