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
from runnerguard.store.atomic import MAX_BUCKETS, BucketRun, SortedSetsRead
from runnerguard.store.time_buckets import WIDTH, TimeIndex, Window
from tests.test_causes_store import completed

POOL = DEFAULT_POOL.name
NOW = float(int(time.time()) // WIDTH * WIDTH)  # a bucket edge
DAY = 86400
INDEX = TimeIndex(lambda start: f"t:b@{start}", "t:legacy", "t:b@")


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


def _script_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval"))


@pytest.mark.parametrize(("runs", "sums", "width", "says"), [
    ([BucketRun("t:b@", 0, MAX_BUCKETS, 1)], [(0, 0, 1)], WIDTH, "at most"),  # one bucket too many
    ([BucketRun("t:b@", 0, 10**9, 0)], [(0, 0, 1)], WIDTH, "at most"),  # a huge count
    ([BucketRun("t:b@", 0, 3, 0), BucketRun("t:b@", 1800, MAX_BUCKETS - 2, 0)], [(0, 0, 1)], WIDTH, "at most"),
    ([BucketRun("t:b@", 0, -1, 2)], [(0, 0, 1)], WIDTH, ">= 0"),
    ([BucketRun("t:b@", 0, True, 0)], [(0, 0, 1)], WIDTH, ">= 0"),  # a bool is no count
    ([BucketRun("", 0, 2, 0)], [(0, 0, 1)], WIDTH, "prefix"),
    ([BucketRun("t:b@", 0.5, 2, 0)], [(0, 0, 1)], WIDTH, "first"),  # a float start
    ([BucketRun("t:b@", 0, 2, 0)], [(1, 0, 1)], WIDTH, "runs by index"),
    ([BucketRun("t:b@", 0, 2, 0)], [(0, 1, 3)], WIDTH, "outside"),
    ([BucketRun("t:b@", 0, 2, 0)], [(0, 2, 1)], WIDTH, "outside"),
    ([BucketRun("t:b@", 0, 2, 0)], [(0, 0, 1)], 0, "width"),
])
def test_a_bucket_tally_that_is_malformed_or_too_big_is_refused_before_the_script_runs(
        redis_client: redis.Redis, runs: list[BucketRun], sums: list[tuple[int, int, int]], width: int,
        says: str) -> None:
    read = SortedSetsRead(redis_client)
    redis_client.zadd("t:b@0", {"3:1": 1})
    redis_client.config_resetstat()
    with pytest.raises(ValueError, match=says):
        read.tally([("t:b@0", "-inf", "+inf")], runs, sums, width=width)
    assert _script_calls(redis_client) == 0  # nothing was sent
    assert redis_client.zcard("t:b@0") == 1  # and nothing lost
    # the same reader still answers a good call
    assert read.tally([("t:b@0", "-inf", "+inf")], [BucketRun("t:b@", 0, 1, 1)], [(0, 0, 2)], width=WIDTH) == [1, 1]


def test_the_script_names_the_buckets_as_the_index_does(redis_client: redis.Redis) -> None:
    """A run of buckets named by the script (from the prefix, the first start and counts) counts the keys Python
    names, the missing ones as 0, and a sum of zero buckets is 0."""
    starts = [int(NOW) + k * WIDTH for k in range(-3, 3)]
    for n, start in enumerate(starts):
        if n != 2:  # one missing, inside the run
            redis_client.zadd(INDEX.bucket(start), {f"3:{n}:{m}": start + m for m in range(n + 1)})
    read = SortedSetsRead(redis_client)
    # three buckets up to now by ZCARD, three after it behind one EXISTS (two of them exist: counted)
    run = BucketRun("t:b@", starts[0], 3, 3)
    got = read.tally([], [run], [(0, 0, 6), (0, 0, 3), (0, 3, 6), (0, 2, 3), (0, 4, 4), (0, 6, 6)], width=WIDTH)
    assert got == [1 + 2 + 4 + 5 + 6, 1 + 2, 4 + 5 + 6, 0, 0, 0]


def test_a_window_spanning_zero_buckets_counts_its_edges_and_the_old_set_only(redis_client: redis.Redis) -> None:
    redis_client.zadd(INDEX.legacy, {"3:old": NOW - DAY - 30})
    pipe = redis_client.pipeline(transaction=False)
    time_buckets.add(pipe, INDEX, "3:a", NOW + 10, retention_seconds=DAY)
    time_buckets.add(pipe, INDEX, "3:b", NOW + 20, retention_seconds=DAY)
    pipe.execute()
    windows = [Window(INDEX, NOW + 10, NOW + 10),  # a point: one bucket, by score
               Window(INDEX, NOW + 10, NOW + 20, open_low=True),  # inside one bucket
               Window(INDEX, NOW + 5, NOW + WIDTH + 5),  # two edge buckets and none between
               Window(INDEX, NOW - DAY - 60, NOW - DAY - 1),  # wholly before the floor: the old set alone
               Window(INDEX, NOW + 30, NOW + 10)]  # empty (low above high)
    redis_client.config_resetstat()
    assert time_buckets.tally(redis_client, windows, now=NOW, floor=NOW - DAY) == [1, 1, 2, 1, 0]
    assert _script_calls(redis_client) == 1


def test_a_tally_longer_than_one_call_is_split_and_still_exact(redis_client: redis.Redis) -> None:
    rng = random.Random(7)
    span = 40 * DAY  # 5,760 buckets and the day ahead: more than one call takes
    assert span // WIDTH > MAX_BUCKETS
    members = {f"3:{n}": rng.uniform(NOW - span, NOW + DAY / 2) for n in range(400)}
    pipe = redis_client.pipeline(transaction=False)
    for n, (member, score) in enumerate(members.items()):
        if n % 7:
            time_buckets.add(pipe, INDEX, member, score, retention_seconds=60 * DAY)
        else:
            pipe.zadd(INDEX.legacy, {member: score})
    pipe.execute()
    redis_client.zadd("t:reference", members)
    lows = [NOW - span, NOW - 33 * DAY + 0.5, NOW - 20 * DAY, NOW - 7.5 * DAY, NOW - 1]
    windows = [Window(INDEX, low, high, open_low) for low in lows for high in (None, NOW - 5 * DAY, NOW + 3 * WIDTH)
               for open_low in (False, True) if high is None or high >= low]
    redis_client.config_resetstat()
    counts = time_buckets.tally(redis_client, windows, now=NOW, floor=NOW - span)
    assert _script_calls(redis_client) >= 2
    for window, got in zip(windows, counts, strict=True):
        low = f"({window.low!r}" if window.open_low else window.low
        want = redis_client.zcount("t:reference", low, "+inf" if window.high is None else window.high)
        assert got == want, window
    assert sum(counts) > 0


def test_an_index_whose_prefix_disagrees_with_its_bucket_names_is_refused() -> None:
    with pytest.raises(ValueError, match=r"prefix|str\(start\)"):
        TimeIndex(lambda start: f"t:b@{start // WIDTH}", "t:legacy", "t:b@")
    with pytest.raises(ValueError, match="prefix"):
        time_buckets.tally(redis.Redis(), [Window(TimeIndex(lambda start: f"t:c@{start}", "t:legacy"), NOW)],
                           now=NOW, floor=NOW - DAY)
