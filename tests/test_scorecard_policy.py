"""Scorecard targets from the policy: `[scorecard]`, per-pool `scorecard = {...}`, and the pool's runner count."""

from __future__ import annotations

from typing import Any

import pytest

from config import Policy, parse_policy
from config.errors import ConfigError
from runnerguard.domain.rollup import JobTimes, Rule, summarize
from runnerguard.domain.scorecard import FAIL, PASS, PoolInput, Targets, rows_for


def pool(**extra: Any) -> dict[str, Any]:
    return {"name": "laptop", "labels": ["self-hosted"], **extra}


def test_peak_jobs_at_once_follows_the_pools_runners() -> None:
    assert parse_policy({"pool": [pool()]}).targets_for("laptop").peak_concurrency == 1
    assert parse_policy({"pool": [pool(hosts=["a", "b"])]}).targets_for("laptop").peak_concurrency == 2
    assert parse_policy({"pool": [pool(hosts=["a"], runners=4)]}).targets_for("laptop").peak_concurrency == 4
    assert Policy().targets_for("self-hosted").peak_concurrency == 1  # no policy: one runner assumed
    explicit = parse_policy({"pool": [pool(runners=4, scorecard={"peak_concurrency": 2})]})
    assert explicit.targets_for("laptop").peak_concurrency == 2


def test_pool_keys_win_over_the_common_table_over_the_seed() -> None:
    policy = parse_policy({"pool": [pool(scorecard={"failure_rate": 0.2}), pool(name="big", labels=["x"])],
                           "scorecard": {"failure_rate": 0.05, "build_time": "45m", "cache_hit_rate": 0.5}})
    laptop, big = policy.targets_for("laptop"), policy.targets_for("big")
    assert (laptop.failure_rate, laptop.build_time, laptop.cache_hit_rate) == (0.2, 2700, 0.5)
    assert (big.failure_rate, big.completion_rate, big.fallback_activation) == (0.05, 0.95, 0.05)
    assert Policy().targets_for("self-hosted") == Targets(peak_concurrency=1)


@pytest.mark.parametrize(("data", "key"), [
    ({"scorecard": {"peak": 3}}, "scorecard.peak"),
    ({"scorecard": {"failure_rate": 1.5}}, "scorecard.failure_rate"),
    ({"scorecard": {"failure_rate": "10%"}}, "scorecard.failure_rate"),
    ({"scorecard": {"build_time": "soon"}}, "scorecard.build_time"),
    ({"scorecard": {"peak_concurrency": 0}}, "scorecard.peak_concurrency"),
    ({"scorecard": {"peak_concurrency": True}}, "scorecard.peak_concurrency"),
    ({"scorecard": "strict"}, "scorecard"),
    ({"pool": [pool(runners=0)]}, "pool.laptop.runners"),
    ({"pool": [pool(runners="2")]}, "pool.laptop.runners"),
    ({"pool": [pool(scorecard={"cache_hit_rate": 0})]}, "pool.laptop.scorecard.cache_hit_rate"),
    ({"pool": [pool(scorecard={"x": 1})]}, "pool.laptop.scorecard.x"),
])
def test_a_wrong_target_stops_the_service_naming_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_policy(data)
    assert raised.value.key == key


def test_one_runner_busy_all_week_passes_peak_jobs_at_once() -> None:
    # one job after another on a one-runner pool: the seed's ">= 3" could never pass; the pool's own target does
    jobs = [JobTimes(created=h * 3600.0, started=h * 3600.0 + 10, completed=h * 3600.0 + 3000, conclusion="success")
            for h in range(1, 20)]
    summary = summarize(jobs, 0, 30 * 3600, now=30 * 3600, rule=Rule())
    one = {r.metric: r for r in rows_for(PoolInput("laptop", targets=Targets(peak_concurrency=1)), summary,
                                         now=30 * 3600)}
    seed = {r.metric: r for r in rows_for(PoolInput("laptop"), summary, now=30 * 3600)}
    assert (one["peak_concurrency"].target, one["peak_concurrency"].status) == (">= 1", PASS)
    assert seed["peak_concurrency"].status == FAIL
