"""Read what the scorecard, the dashboard and the report commands need from Redis (thin: no arithmetic here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis

from config import Policy
from runnerguard.domain import rollup, scorecard
from runnerguard.domain.pools import DEFAULT_POOL
from runnerguard.store import job_windows, jobstore, prewarm_stats

STEP = 6 * 3600  # summary buckets: 28 a week, on UTC 00/06/12/18 h


def pool_names(client: redis.Redis, policy: Policy) -> list[str]:
    """Declared pools; without a policy, the default pool and any pool that has recorded jobs (still bounded)."""
    if policy.pools:
        return [p.name for p in policy.pools]
    return list(dict.fromkeys([DEFAULT_POOL.name, *jobstore.pools_seen(client)]))


def rule_for(policy: Policy, pool: str) -> rollup.Rule:
    counting = policy.failure_rate_for(pool).counting
    return rollup.Rule(failed=counting.failed, ignored=counting.ignored,
                       stuck_after_seconds=policy.rollback.stuck_queue.after_seconds)


def pool_summaries(client: redis.Redis, policy: Policy, pool: str, *, now: float) -> list[rollup.Summary]:
    """The last 7 days in 6-hour buckets (from the boundary before now - 7 days)."""
    return job_windows.summaries(client, pool, since=now - scorecard.WEEK, now=now, step=STEP,
                                 rule=rule_for(policy, pool))


def pool_input(client: redis.Redis, policy: Policy, pool: str, *, now: float,
               cache_rows: Sequence[Mapping[str, Any]], periods: Mapping[str, list[tuple[float, float | None]]],
               ) -> scorecard.PoolInput:
    rule = rule_for(policy, pool)
    hits, lookups = job_windows.cache_counts(cache_rows, policy.caches, pool)
    recent = jobstore.created_count(client, pool, now - scorecard.FALLBACK_WINDOW, now)
    return scorecard.PoolInput(
        pool=pool, cache_hits=hits, cache_lookups=lookups, rollback_periods=periods.get(pool, []),
        stuck_after_seconds=rule.stuck_after_seconds, failed_conclusions=rule.failed,
        ignored_conclusions=rule.ignored,
        # the fallback share looks back 30 days: a count is all it needs of the jobs there (O(log n))
        jobs_in_fallback_window=int(recent), targets=policy.targets_for(pool),
    )


def scorecard_by_pool(client: redis.Redis, policy: Policy, *, now: float
                      ) -> dict[str, tuple[list[rollup.Summary], list[scorecard.Row]]]:
    """Per pool: its bucket summaries (for the charts) and its scorecard rows, from one read."""
    # The scorecard's window: hits and misses of the last 7 days, not since the counters began.
    cache_rows = prewarm_stats.window_rows(client, days=7, now=now)
    periods = job_windows.rollback_periods(client)
    result = {}
    for pool in pool_names(client, policy):
        parts = pool_summaries(client, policy, pool, now=now)
        data = pool_input(client, policy, pool, now=now, cache_rows=cache_rows, periods=periods)
        result[pool] = (parts, scorecard.rows_for(data, rollup.merge(parts), now=now))
    return result


def scorecard_rows(client: redis.Redis, policy: Policy, *, now: float) -> list[scorecard.Row]:
    return [row for _, rows in scorecard_by_pool(client, policy, now=now).values() for row in rows]


def fold_summaries(client: redis.Redis, policy: Policy, *, now: float) -> int:
    """Fold the settled buckets of every pool's last week into the stored summaries; how many pools."""
    pools = pool_names(client, policy)
    for pool in pools:
        pool_summaries(client, policy, pool, now=now)
    return len(pools)
