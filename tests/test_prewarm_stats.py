"""Prewarm counters per cache and host, and the rows `GET /api/caches` serves from them."""

from __future__ import annotations

import time

import redis

from runnerguard.prewarm import cache_rows, hit_rate
from runnerguard.store import keys
from runnerguard.store.prewarm_stats import record, record_job_answers, set_state, window_rows


def test_hit_rate_is_none_before_any_prewarm_and_counts_errors_as_not_hits() -> None:
    assert hit_rate(0, 0, 0) is None
    assert hit_rate(3, 1, 0) == 0.75
    assert hit_rate(1, 1, 2) == 0.25


def test_rows_sum_counters_and_keep_the_last_error(redis_client: redis.Redis) -> None:
    record(redis_client, "vosk-small", "laptop", counter="misses", state="installed", nbytes=40_000, seconds=2.5,
           sha256="a" * 64, now=1.0)
    record(redis_client, "vosk-small", "laptop", counter="errors", state="failed", seconds=0.5,
           error="checksum mismatch: ...", now=2.0)
    for at in (3.0, 4.0):
        record(redis_client, "vosk-small", "laptop", counter="hits", state="installed", seconds=0.001, now=at)

    [row] = cache_rows(redis_client)

    assert row["name"] == "vosk-small" and row["host"] == "laptop"
    assert (row["hits"], row["misses"], row["errors"], row["hit_rate"]) == (2, 1, 1, 0.5)
    assert (row["bytes_downloaded"], row["state"], row["sha256"]) == (40_000, "installed", "a" * 64)
    assert row["last_error"] == "checksum mismatch: ..."
    assert abs(row["seconds"] - 3.002) < 1e-9


def test_rows_filter_by_host_sort_by_name_and_include_expected_caches(redis_client: redis.Redis) -> None:
    record(redis_client, "zeta", "laptop", counter="hits", state="installed", now=1.0)
    record(redis_client, "alpha", "laptop", counter="misses", state="installed", now=1.0)
    record(redis_client, "alpha", "desktop", counter="misses", state="installed", now=1.0)

    laptop = cache_rows(redis_client, "laptop", expected=[("never-warmed", "laptop"), ("other", "desktop")])
    everything = cache_rows(redis_client)

    assert [(r["name"], r["host"]) for r in laptop] == [("alpha", "laptop"), ("never-warmed", "laptop"),
                                                        ("zeta", "laptop")]
    never = laptop[1]
    assert (never["state"], never["hits"], never["hit_rate"], never["sha256"]) == ("missing", 0, None, None)
    assert [(r["name"], r["host"]) for r in everything] == [("alpha", "desktop"), ("alpha", "laptop"),
                                                            ("zeta", "laptop")]


def test_eviction_state_change_shows_as_missing(redis_client: redis.Redis) -> None:
    record(redis_client, "big", "laptop", counter="misses", state="installed", now=1.0)
    set_state(redis_client, "big", "laptop", "missing", now=2.0)
    [row] = cache_rows(redis_client)
    assert (row["state"], row["misses"]) == ("missing", 1)


def test_rows_read_the_same_through_a_decoding_client(redis_client: redis.Redis, redis_url: str) -> None:
    record(redis_client, "vosk", "laptop", counter="hits", state="installed", now=1.0)
    decoding = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert cache_rows(decoding) == cache_rows(redis_client)
    finally:
        decoding.close()


def test_counters_live_under_the_keys_module_names(redis_client: redis.Redis) -> None:
    record(redis_client, "vosk", "laptop", counter="misses", state="installed", nbytes=7, now=1.0)
    assert redis_client.hget(keys.prewarm_stats("vosk", "laptop"), "bytes_downloaded") == b"7"
    assert redis_client.smembers(keys.PREWARM_STATS_INDEX) == {b"laptop\tvosk"}


def test_the_scorecard_window_counts_only_the_last_seven_days(redis_client: redis.Redis) -> None:

    now = 1_795_000_000.0
    for days_ago, counter in ((10, "misses"), (3, "misses"), (1, "hits"), (0, "hits"), (0, "errors")):
        record(redis_client, "model", "laptop-extra", counter=counter, state=None, now=now - days_ago * 86400)
    rows = window_rows(redis_client, days=7, now=now)
    assert rows == [{"name": "model", "host": "laptop-extra", "hits": 2, "misses": 1, "errors": 1, "job_hits": 0,
                     "job_waited": 0}]
    assert 0 < redis_client.ttl("rg:prewarm:daily:laptop-extra:model:" + time.strftime("%Y-%m-%d", time.gmtime(now)))


def test_job_side_answers_count_in_the_window_and_win_over_prewarms(redis_client: redis.Redis) -> None:
    now = 1_795_000_000.0
    record(redis_client, "model", "laptop-extra", counter="misses", state="installed", now=now)
    record_job_answers(redis_client, "model", "laptop-extra", hit=3, waited=1, now=now - 10 * 86400)  # too old
    record_job_answers(redis_client, "model", "laptop-extra", hit=1, waited=1, now=now)
    (row,) = window_rows(redis_client, days=7, now=now)
    assert (row["job_hits"], row["job_waited"], row["misses"]) == (1, 1, 1)
    (total,) = cache_rows(redis_client)
    assert (total["job_hits"], total["job_waited"], total["hit_rate"], total["prewarm_hit_rate"]) == (4, 2, 0.6667, 0.0)
