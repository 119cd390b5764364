"""The finished and failed indexes as 10-minute buckets: the failure rate counts exactly what one sorted set did,
at the window's edges too, and the previous release's whole sets are counted beside the buckets, never twice."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
import redis

from config import Policy
from devtools.redis_server import start_redis
from runnerguard.domain.events import parse_workflow_job
from runnerguard.domain.pools import DEFAULT_POOL
from runnerguard.services.rollback import RollbackService
from runnerguard.store import job_members, job_windows, jobstore, keys, time_buckets
from runnerguard.store.time_buckets import WIDTH, TimeIndex, Window
from tests.test_causes_store import completed

POOL = DEFAULT_POOL.name
NOW = float(int(time.time()) // WIDTH * WIDTH)  # a bucket edge
DAY = 86400
INDEX = TimeIndex(lambda start: f"t:b@{start}", "t:legacy")


def _upsert(client: redis.Redis, payload: dict[str, Any], *, retention: int = 30 * DAY) -> dict[str, Any]:
    return jobstore.upsert(client, parse_workflow_job(payload), seen_at=NOW, pools=[POOL],
                           rule=jobstore.CountingRule(), retention_seconds=retention, now=time.time())


def _decision(client: redis.Redis, now: float) -> Any:
    return RollbackService(redis=client, policy=Policy(), github=None, clock=lambda: now).failure_rate_decision(
        DEFAULT_POOL)


def test_the_trigger_counts_the_window_exactly_across_bucket_edges(redis_client: redis.Redis) -> None:
    now = NOW + 123  # the window's start falls inside a bucket, not on its edge
    since = now - DAY
    for job_id, at in ((1, since + 5), (2, now - 7200), (3, now - 100)):
        _upsert(redis_client, completed(job_id, "success", at))
    for job_id, at in ((4, since), (5, since + WIDTH), (6, now)):  # on the edge (counted) and inside
        _upsert(redis_client, completed(job_id, "failure", at))
    _upsert(redis_client, completed(7, "failure", since - 1))  # 24 h + 1 s ago: outside
    assert jobstore.window_counts(redis_client, POOL, since) == (6, 3)
    decision = _decision(redis_client, now)
    assert not decision.fire  # 3 of 6 is not more than 50%
    # one more failure a second inside the window tips it; the one a second outside never did
    _upsert(redis_client, completed(8, "failure", since + 1))
    assert jobstore.window_counts(redis_client, POOL, since) == (7, 4)
    assert _decision(redis_client, now).fire
    # a second later the failure on the old edge has left the window
    assert jobstore.window_counts(redis_client, POOL, since + 1) == (6, 3)
    assert not _decision(redis_client, now + 1).fire


def test_a_job_finished_again_is_counted_once(redis_client: redis.Redis) -> None:
    for _ in range(3):  # replays, redeliveries
        _upsert(redis_client, completed(1, "failure", NOW - 60))
    assert jobstore.window_counts(redis_client, POOL, NOW - DAY) == (1, 1)
    # a later delivery dating the completion otherwise moves it (two buckets on), still once
    _upsert(redis_client, completed(1, "failure", NOW + 2 * WIDTH))
    assert jobstore.window_counts(redis_client, POOL, NOW - DAY) == (1, 1)
    state = jobstore.index_state(redis_client, POOL)
    assert state["finished"] == state["failed"] == [(b"3:1", NOW + 2 * WIDTH)]


def test_the_previous_releases_whole_sets_count_and_are_not_counted_twice_once_rewritten(
        redis_client: redis.Redis) -> None:
    since = NOW - DAY
    # what the previous release wrote for three jobs: one on the window's edge, one a second before it
    redis_client.zadd(keys.pool_finished(POOL), {"3:1": since, "3:2": since - 1, "3:3": NOW - 60})
    redis_client.zadd(keys.pool_failed(POOL), {"3:1": since, "3:2": since - 1})
    redis_client.sadd(keys.POOLS_SEEN, POOL)
    _upsert(redis_client, completed(4, "success", NOW - 30))
    assert jobstore.window_counts(redis_client, POOL, since) == (3, 1)
    # the old jobs delivered again: each moves to its bucket and leaves the whole set
    _upsert(redis_client, completed(1, "failure", since))
    _upsert(redis_client, completed(3, "success", NOW - 60))
    assert jobstore.window_counts(redis_client, POOL, since) == (3, 1)
    assert redis_client.zrange(keys.pool_finished(POOL), 0, -1) == [b"3:2"]
    assert redis_client.zrange(keys.pool_failed(POOL), 0, -1) == [b"3:2"]
    assert [r["job_id"] for r in jobstore.failed_jobs(redis_client, POOL, since - 1)] == [1]  # 3:2 has no record


def test_a_finished_bucket_stays_a_listpack_and_expires_with_the_retention(redis_client: redis.Redis) -> None:
    for job_id in range(100):
        _upsert(redis_client, completed(job_id, "failure", NOW + job_id), retention=3600)
    for name in (keys.pool_finished_at(POOL, int(NOW)), keys.pool_failed_at(POOL, int(NOW))):
        assert redis_client.zcard(name) == 100
        assert redis_client.object("encoding", name) == b"listpack"
        assert abs(redis_client.ttl(name) - (NOW + WIDTH + 3600 - time.time())) <= 5
    assert not redis_client.exists(keys.pool_finished(POOL), keys.pool_failed(POOL))


def test_tally_equals_zcount_on_one_sorted_set_at_and_around_every_edge(redis_client: redis.Redis) -> None:
    rng = random.Random(18)
    edges = [NOW - k * WIDTH for k in range(-2, 8)]
    scores = [e + d for e in edges for d in (-1, -0.5, 0, 0.5, 1)] + [rng.uniform(NOW - 5000, NOW + 1000)
                                                                       for _ in range(80)]
    members = {f"3:{n}": s for n, s in enumerate(scores)}
    pipe = redis_client.pipeline(transaction=True)
    for n, (member, score) in enumerate(members.items()):
        if n % 5:
            time_buckets.add(pipe, INDEX, member, score, retention_seconds=DAY)
        else:
            pipe.zadd(INDEX.legacy, {member: score})  # a fifth in the previous release's whole set
    pipe.execute()
    redis_client.zadd("t:reference", members)
    bounds = [*edges, *(e + d for e in edges for d in (-1, -0.5, 0.5, 1))]
    windows = [Window(INDEX, low, high, open_low) for low in bounds for high in [*bounds, None]
               for open_low in (False, True) if high is None or high >= low]
    sample = rng.sample(windows, 300)
    counts = time_buckets.tally(redis_client, sample, now=NOW, floor=NOW - DAY)
    for window, got in zip(sample, counts, strict=True):
        low = f"({window.low!r}" if window.open_low else window.low
        want = redis_client.zcount("t:reference", low, "+inf" if window.high is None else window.high)
        assert got == want, window


def test_the_failure_rate_series_counts_each_rolling_window_exactly(redis_client: redis.Redis) -> None:
    points = [NOW - k * 3 * 3600 for k in range(8, -1, -1)]
    redis_client.zadd(keys.pool_finished(POOL), {"3:900": points[2] - DAY})  # old layout, a success on an open edge
    for job_id, (at, conclusion) in enumerate([(points[2] - DAY + 1, "failure"), (points[3], "failure"),
                                               (points[3] + 1, "success"), (points[8] - 1, "success")]):
        _upsert(redis_client, completed(10 + job_id, conclusion, at))
    series = dict(job_windows.failure_rate_series(redis_client, POOL, points, DAY))
    # (t - DAY, t]: the old success at points[2] - DAY is in points[0]'s and points[1]'s windows, not in points[2]'s
    assert series[points[0]] == series[points[1]] == 0.5 and series[points[2]] == 1.0
    assert series[points[3]] == 1.0  # the failure at points[3] itself, not the success a second later
    assert series[points[4]] == series[points[7]] == 0.5 and series[points[8]] == 1 / 3
    assert jobstore.window_counts(redis_client, POOL, points[8] - DAY) == (3, 1)


def test_a_shortened_retention_drops_the_finished_buckets_at_the_periodic_trim(redis_client: redis.Redis) -> None:
    _upsert(redis_client, completed(1, "failure", NOW - 7200))
    redis_client.zadd(keys.pool_finished(POOL), {"3:2": NOW - 7200})
    assert jobstore.window_counts(redis_client, POOL, NOW - 3 * DAY) == (2, 1)
    assert jobstore.trim_indexes(redis_client, retention_seconds=3600, now=time.time()) >= 3
    assert jobstore.window_counts(redis_client, POOL, NOW - 3 * DAY) == (0, 0)
    assert jobstore.index_state(redis_client, POOL)["failed"] == []


def test_the_trigger_answers_on_a_full_redis(redis_client: redis.Redis) -> None:
    """A full Redis (maxmemory, noeviction) refuses writes; the failure rate must still be read."""
    from tests.test_full_redis import MAXMEMORY, fill  # noqa: PLC0415 - the full-Redis helpers, one test's need
    server = start_redis(maxmemory=MAXMEMORY)
    client = redis.Redis.from_url(server.url)
    try:
        _upsert(client, completed(1, "failure", NOW - 60))
        fill(client)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("one-more", "x")
        assert jobstore.window_counts(client, POOL, NOW - DAY) == (1, 1)
        assert job_windows.failure_rate_series(client, POOL, [NOW], DAY) == [(NOW, 1.0)]
        assert [r["job_id"] for r in jobstore.failed_jobs(client, POOL, NOW - DAY)] == [1]
    finally:
        client.close()
        server.stop()


def test_failed_jobs_are_the_newest_first_of_buckets_and_whole_set(redis_client: redis.Redis) -> None:
    for job_id, at in ((1, NOW - 3000), (2, NOW - 100), (3, NOW - 2 * DAY)):
        _upsert(redis_client, completed(job_id, "failure", at))
    redis_client.zrem(keys.pool_failed_at(POOL, int(time_buckets.start_of(NOW - 3000))), "3:1")
    redis_client.zadd(keys.pool_failed(POOL), {"3:1": NOW - 3000})  # as the previous release left it
    assert [r["job_id"] for r in jobstore.failed_jobs(redis_client, POOL, NOW - DAY)] == [2, 1]
    assert [r["job_id"] for r in jobstore.failed_jobs(redis_client, POOL, NOW - DAY, limit=1)] == [2]
    assert job_members.newest_of(redis_client, job_members.pool_failed(POOL), NOW - 3 * DAY, 5) == [
        "3:2", "3:1", "3:3"]
