"""The Phase 3 scorecard as pure computation: each target passing, failing, and 'no data' when there is none."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from runnerguard.domain import charts, rollup
from runnerguard.domain.scorecard import (
    FAIL,
    NO_DATA,
    PASS,
    JobTimes,
    PoolInput,
    in_force_share,
    peak_concurrency,
    percentile,
    periods_from_history,
    score_pool,
)
from runnerguard.store.job_windows import cache_counts

NOW = 1_800_000_000.0
H, MIN, DAY = 3600.0, 60.0, 86400.0


def job(created_ago: float, *, queue: float = 60, run: float | None = 600, conclusion: str | None = "success",
        started: bool = True) -> JobTimes:
    created = NOW - created_ago
    start = created + queue if started else None
    end = start + run if start is not None and run is not None else None
    return JobTimes(created, start, end, conclusion if end is not None or not started else None)


def rows(data: PoolInput) -> dict[str, object]:
    return {r.metric: r for r in score_pool(data, now=NOW)}


def status(data: PoolInput, metric: str) -> str:
    return rows(data)[metric].status  # type: ignore[attr-defined,no-any-return]


def test_no_data_is_never_a_pass() -> None:
    result = rows(PoolInput("empty"))
    assert {r.status for r in result.values()} == {NO_DATA}  # type: ignore[attr-defined]
    assert all(r.actual is None and r.actual_text == "no data" for r in result.values())  # type: ignore[attr-defined]


def test_build_time_median_of_successful_runs_only() -> None:
    quick = [job(H * i, run=10 * MIN) for i in range(1, 4)]
    slow_failures = [job(H * i, run=5 * H, conclusion="failure") for i in range(4, 10)]
    data = PoolInput("p", jobs=quick + slow_failures)
    row = rows(data)["build_time"]
    assert row.actual == 600 and row.status == PASS  # type: ignore[attr-defined]
    slow = PoolInput("p", jobs=[job(H * i, run=35 * MIN) for i in range(1, 4)] + [job(5 * H, run=MIN)])
    assert rows(slow)["build_time"].status == FAIL  # type: ignore[attr-defined]
    # exactly 30 minutes is not "under 30 minutes"
    assert status(PoolInput("p", jobs=[job(H, run=30 * MIN)]), "build_time") == FAIL
    # only failures: no successful build to measure
    assert status(PoolInput("p", jobs=slow_failures), "build_time") == NO_DATA


def test_build_time_ignores_jobs_outside_the_window() -> None:
    old = [job(8 * DAY, run=2 * H) for _ in range(5)]
    assert status(PoolInput("p", jobs=old), "build_time") == NO_DATA
    assert status(PoolInput("p", jobs=[*old, job(H)]), "build_time") == PASS


def test_cache_hit_rate() -> None:
    assert status(PoolInput("p", cache_hits=81, cache_lookups=100), "cache_hit_rate") == PASS
    assert status(PoolInput("p", cache_hits=80, cache_lookups=100), "cache_hit_rate") == FAIL  # "above 80%"
    assert status(PoolInput("p", cache_hits=0, cache_lookups=0), "cache_hit_rate") == NO_DATA


def test_peak_concurrency_sweep() -> None:
    assert peak_concurrency([(0, 10), (5, 15), (6, 7), (20, 30)], 0, 100) == 3
    # one ends exactly when the next starts: a hand-over, not two at once
    assert peak_concurrency([(0, 10), (10, 20), (20, 30)], 0, 100) == 1
    # clipped to the window
    assert peak_concurrency([(0, 10), (5, 15)], 12, 100) == 1
    three = [job(H, queue=0, run=H), job(H - 60, queue=0, run=H), job(H - 120, queue=0, run=H)]
    assert rows(PoolInput("p", jobs=three))["peak_concurrency"].actual == 3  # type: ignore[attr-defined]
    assert status(PoolInput("p", jobs=three), "peak_concurrency") == PASS
    assert status(PoolInput("p", jobs=three[:2]), "peak_concurrency") == FAIL
    # a job still running counts until now
    running = [job(H, queue=0, run=None, conclusion=None), *three[:2]]
    assert status(PoolInput("p", jobs=running), "peak_concurrency") == PASS
    never_ran = [job(H, started=False, conclusion="cancelled")]
    assert status(PoolInput("p", jobs=never_ran), "peak_concurrency") == NO_DATA


def test_failure_rate_counts_by_the_pools_rule() -> None:
    ok = [job(H * i) for i in range(1, 11)]
    one_failed = [*ok, job(2 * H, conclusion="failure")]  # 1 of 11
    assert status(PoolInput("p", jobs=one_failed), "failure_rate") == PASS
    two_failed = [*ok[:8], job(2 * H, conclusion="failure"), job(3 * H, conclusion="timed_out")]  # 2 of 10
    assert status(PoolInput("p", jobs=two_failed), "failure_rate") == FAIL
    # cancelled counts neither way
    cancelled = [job(H, conclusion="cancelled") for _ in range(20)]
    data = PoolInput("p", jobs=[*ok[:9], job(2 * H, conclusion="failure"), *cancelled])  # 1 of 10: exactly 10%
    assert rows(data)["failure_rate"].actual == pytest.approx(0.1)  # type: ignore[attr-defined]
    assert status(data, "failure_rate") == FAIL
    assert status(PoolInput("p", jobs=cancelled), "failure_rate") == NO_DATA
    strict = PoolInput("p", jobs=cancelled + ok, ignored_conclusions=frozenset(), failed_conclusions=frozenset(
        {"failure", "cancelled"}))
    assert status(strict, "failure_rate") == FAIL


def test_completion_rate() -> None:
    done = [job(H * i) for i in range(1, 21)]  # 20 succeeded
    assert status(PoolInput("p", jobs=[*done, job(H, conclusion="failure")]), "completion_rate") == PASS
    one_cancelled = [*done, job(H, conclusion="cancelled")]  # 20 of 21 = 95.2%
    assert status(PoolInput("p", jobs=one_cancelled), "completion_rate") == PASS
    two_lost = [*done, job(H, conclusion="cancelled"), job(5 * H, started=False, conclusion=None)]  # 20 of 22
    assert status(PoolInput("p", jobs=two_lost), "completion_rate") == FAIL
    # a job queued a minute ago is in flight, not lost
    in_flight = [*done, job(MIN, started=False, conclusion=None)]
    assert rows(PoolInput("p", jobs=in_flight))["completion_rate"].actual == 1.0  # type: ignore[attr-defined]
    assert status(PoolInput("p", jobs=[job(MIN, started=False, conclusion=None)]), "completion_rate") == NO_DATA


def test_queue_blocking() -> None:
    fine = [job(H * i, queue=10 * MIN) for i in range(3, 6)]
    assert status(PoolInput("p", jobs=fine), "queue_blocking") == PASS
    blocked = [*fine, job(5 * H, queue=3 * H)]
    assert rows(PoolInput("p", jobs=blocked))["queue_blocking"].actual == 3 * H  # type: ignore[attr-defined]
    assert status(PoolInput("p", jobs=blocked), "queue_blocking") == FAIL
    still_waiting = [*fine, job(2.5 * H, started=False, conclusion=None)]
    assert status(PoolInput("p", jobs=still_waiting), "queue_blocking") == FAIL
    assert status(PoolInput("p", jobs=still_waiting, stuck_after_seconds=int(3 * H)), "queue_blocking") == PASS
    assert status(PoolInput("p"), "queue_blocking") == NO_DATA


def test_fallback_activation_from_history() -> None:
    history = [
        {"at": NOW - 10 * DAY, "state": "pr_open"},
        {"at": NOW - 10 * DAY + H, "state": "rolled_back"},
        {"at": NOW - 9 * DAY, "state": "restoring"},
        {"at": NOW - 8 * DAY, "state": "healthy"},
    ]
    periods = periods_from_history(history)
    assert periods == [(NOW - 10 * DAY, NOW - 8 * DAY)]
    data = PoolInput("p", jobs=[job(H)], rollback_periods=periods)  # 2 of 30 days: 6.7%
    assert rows(data)["fallback_activation"].actual == pytest.approx(2 / 30)  # type: ignore[attr-defined]
    assert status(data, "fallback_activation") == FAIL
    short = periods_from_history([{"at": NOW - 2 * DAY, "state": "rolled_back"},
                                  {"at": NOW - 1 * DAY, "state": "healthy"}])
    assert status(PoolInput("p", jobs=[job(H)], rollback_periods=short), "fallback_activation") == PASS
    # still in force: runs until now
    open_now = periods_from_history([{"at": NOW - 3 * DAY, "state": "rolled_back"}])
    assert open_now == [(NOW - 3 * DAY, None)]
    assert status(PoolInput("p", jobs=[job(H)], rollback_periods=open_now), "fallback_activation") == FAIL
    never = PoolInput("p", jobs=[job(H)])
    assert rows(never)["fallback_activation"].actual == 0.0  # type: ignore[attr-defined]
    assert status(never, "fallback_activation") == PASS
    assert status(PoolInput("p", jobs_in_fallback_window=0), "fallback_activation") == NO_DATA
    assert status(PoolInput("p", jobs_in_fallback_window=5), "fallback_activation") == PASS


def test_in_force_share_merges_overlapping_repos_and_clips() -> None:
    assert in_force_share([(0, 50), (25, 75)], 0, 100) == 0.75
    assert in_force_share([(-50, 10), (90, None)], 0, 100) == 0.2
    assert in_force_share([], 0, 100) == 0.0


def test_percentile() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.95) == 5.0
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile(list(range(101)), 0.95) == 95


def test_chart_series_from_bucket_summaries() -> None:
    jobs = [JobTimes(NOW - 3 * H, NOW - 3 * H + 60, NOW - 2 * H, "success"),
            JobTimes(NOW - 3 * H, NOW - 3 * H + 120, NOW - 2.5 * H, "success"),
            JobTimes(NOW - 30 * H, NOW - 29 * H, None, None)]
    edges = rollup.bucket_edges(NOW - 2 * DAY, NOW, int(6 * H))
    assert edges[0][0] % (6 * H) == 0 and edges[-1][1] > NOW and len(edges) in (8, 9)
    parts = [rollup.summarize(jobs, a, b, now=NOW, rule=rollup.Rule()) for a, b in edges]
    p50, p95 = charts.queue_series(parts)
    # the two recent jobs share a bucket (waits 60 s and 120 s), the old one waited an hour
    assert sorted(v for _, v in p50.points if v is not None) == [90.0, 3600.0]
    assert p95.name == "p95" and len(p50.points) == len(edges)
    peaks = [v for _, v in charts.running_series(parts).points]
    assert max(peaks) == 3  # the two recent ones overlap the one still running since 29 h ago
    assert peaks[0] == 0


def test_bucket_summaries_merge_to_the_single_pass_answer() -> None:
    rng = random.Random(11)
    jobs = []
    for _ in range(400):
        created = NOW - rng.uniform(0, 7 * DAY)
        started = created + rng.expovariate(1 / 600) if rng.random() > 0.03 else None
        completed = started + rng.uniform(30, 3 * H) if started is not None and rng.random() > 0.02 else None
        if completed is not None and completed > NOW:
            completed = None
        conclusion = rng.choice(["success"] * 8 + ["failure", "cancelled"]) if completed is not None else None
        jobs.append(JobTimes(created, started, completed, conclusion))
    rule = rollup.Rule(stuck_after_seconds=3600)
    since = NOW - 7 * DAY
    edges = rollup.bucket_edges(since, NOW, int(6 * H))
    merged = rollup.merge([rollup.summarize(jobs, a, b, now=NOW, rule=rule) for a, b in edges])
    whole = rollup.summarize(jobs, edges[0][0], edges[-1][1], now=NOW, rule=rule)
    for name in ("settled", "reached", "counted", "failed", "peak", "waits", "max_wait"):
        assert getattr(merged, name) == getattr(whole, name), name
    assert sorted(merged.success_runs) == sorted(whole.success_runs)
    assert rollup.Summary.from_json(merged.to_json()) == merged


def test_cache_counts_follow_the_caches_serving_the_pool() -> None:


    @dataclass
    class Cache:
        name: str
        pools: tuple[str, ...]

    rows = [{"name": "vosk", "host": "a", "hits": 8, "misses": 1, "errors": 1},
            {"name": "vosk", "host": "b", "hits": 2, "misses": 0, "errors": 0},
            {"name": "gpu-model", "host": "a", "hits": 0, "misses": 5, "errors": 0}]
    caches = [Cache("vosk", ("laptop",)), Cache("gpu-model", ("gpu",))]
    assert cache_counts(rows, caches, "laptop") == (10, 12)
    assert cache_counts(rows, caches, "gpu") == (0, 5)
    assert cache_counts(rows, caches, "other") == (0, 0)
    assert cache_counts(rows, [], "self-hosted") == (10, 17)  # no caches declared: every cache serves the pool
