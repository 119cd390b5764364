"""The scorecard, computed per pool from recorded job times against its targets: pure (records in, rows out)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from runnerguard.domain.rollup import (
    COMPLETED_CONCLUSIONS,
    JobTimes,
    Rule,
    Summary,
    peak_concurrency,
    percentile,
    summarize,
)

DAY = 86400
WEEK = 7 * DAY
FALLBACK_WINDOW = 30 * DAY
PASS, FAIL, NO_DATA = "pass", "fail", "no data"
DEFAULT_FAILED = frozenset({"failure", "timed_out", "startup_failure"})
DEFAULT_IGNORED = frozenset({"cancelled", "skipped"})
# Every state but healthy: from the rollback PR's opening until the restore PR merges, the pool is not trusted.
IN_FORCE_STATES = frozenset({"pr_open", "rolled_back", "restoring"})

# The seed's targets (its "Success Metrics for Phase 3"); a policy's [scorecard] table sets its own (Targets).
BUILD_TIME_TARGET = 30 * 60
CACHE_HIT_TARGET = 0.80
CONCURRENCY_TARGET = 3
FAILURE_RATE_TARGET = 0.10
COMPLETION_TARGET = 0.95
FALLBACK_TARGET = 0.05

METRIC_TITLES = {
    "build_time": "Successful build time (median run)",
    "cache_hit_rate": "Cache hit rate",
    "peak_concurrency": "Peak jobs running at once",
    "failure_rate": "Failure rate",
    "completion_rate": "Job completion rate",
    "queue_blocking": "No queue blocking (longest wait)",
    "fallback_activation": "Fallback activation (30 days)",
}


@dataclass(frozen=True)
class Targets:
    """What a pool should reach. `peak_concurrency` follows the pool's size: the policy sets it to its runner count."""

    build_time: int = BUILD_TIME_TARGET
    cache_hit_rate: float = CACHE_HIT_TARGET
    peak_concurrency: int = CONCURRENCY_TARGET
    failure_rate: float = FAILURE_RATE_TARGET
    completion_rate: float = COMPLETION_TARGET
    fallback_activation: float = FALLBACK_TARGET


@dataclass(frozen=True)
class PoolInput:
    """One pool's data for the scorecard."""

    pool: str
    jobs: Sequence[JobTimes] = ()
    cache_hits: int = 0
    cache_lookups: int = 0
    rollback_periods: Sequence[tuple[float, float | None]] = ()  # (from, until or None while in force)
    stuck_after_seconds: int = 2 * 3600
    failed_conclusions: frozenset[str] = DEFAULT_FAILED
    ignored_conclusions: frozenset[str] = DEFAULT_IGNORED
    jobs_in_fallback_window: int | None = None  # when None, counted from `jobs`
    targets: Targets = Targets()


@dataclass(frozen=True)
class Row:
    pool: str
    metric: str
    title: str
    target: str
    actual: float | None
    actual_text: str
    status: str
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return asdict(self)


def in_force_share(periods: Iterable[tuple[float, float | None]], since: float, until: float) -> float:
    """Share of [since, until] covered by the union of the periods (overlapping repos count once)."""
    clipped = sorted((max(a, since), min(b if b is not None else until, until)) for a, b in periods)
    covered, cursor = 0.0, since
    for start, end in clipped:
        begin = max(start, cursor)
        if end > begin:
            covered += end - begin
            cursor = end
    return covered / (until - since) if until > since else 0.0


def periods_from_history(entries: Iterable[Mapping[str, Any]]) -> list[tuple[float, float | None]]:
    """Turn a state's transition history ({"at", "state"}, oldest first) into periods with a rollback in force."""
    periods: list[tuple[float, float | None]] = []
    opened: float | None = None
    for entry in sorted(entries, key=lambda e: float(e.get("at") or 0)):
        at, in_force = float(entry.get("at") or 0), entry.get("state") in IN_FORCE_STATES
        if in_force and opened is None:
            opened = at
        elif not in_force and opened is not None:
            periods.append((opened, at))
            opened = None
    if opened is not None:
        periods.append((opened, None))
    return periods


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _minutes_short(seconds: float) -> str:
    return f"{seconds / 60:g} min"


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _row(pool: str, metric: str, target: str, actual: float | None, text: str, *, ok: bool | None,
         detail: str = "", **extra: Any) -> Row:
    status = NO_DATA if actual is None or ok is None else PASS if ok else FAIL
    return Row(pool, metric, METRIC_TITLES[metric], target, actual, text if actual is not None else "no data",
               status, detail, extra)


def rows_for(data: PoolInput, summary: Summary, *, now: float) -> list[Row]:
    """The seven rows of one pool from the summary of its window (the fallback share looks back 30 days)."""
    pool, goal = data.pool, data.targets
    median = percentile(summary.success_runs, 0.5)
    rows = [_row(pool, "build_time", f"< {_minutes_short(goal.build_time)}", median, _minutes(median or 0),
                 ok=median is not None and median < goal.build_time,
                 detail=f"{len(summary.success_runs)} successful jobs")]

    rate = data.cache_hits / data.cache_lookups if data.cache_lookups else None
    rows.append(_row(pool, "cache_hit_rate", f"> {goal.cache_hit_rate:.0%}", rate, _pct(rate or 0),
                     ok=rate is not None and rate > goal.cache_hit_rate,
                     detail=f"{data.cache_hits} hits of {data.cache_lookups} pre-warms in 7 days"))

    peak = float(summary.peak) if summary.ran else None
    rows.append(_row(pool, "peak_concurrency", f">= {goal.peak_concurrency}", peak, f"{int(peak or 0)}",
                     ok=peak is not None and peak >= goal.peak_concurrency,
                     detail="the most whose run times overlapped"))

    failure = summary.failed / summary.counted if summary.counted else None
    rows.append(_row(pool, "failure_rate", f"< {goal.failure_rate:.0%}", failure, _pct(failure or 0),
                     ok=failure is not None and failure < goal.failure_rate,
                     detail=f"{summary.failed} failed of {summary.counted} finished"))

    completion = summary.reached / summary.settled if summary.settled else None
    rows.append(_row(pool, "completion_rate", f"> {goal.completion_rate:.0%}", completion, _pct(completion or 0),
                     ok=completion is not None and completion > goal.completion_rate,
                     detail=f"{summary.reached} reached success or failure of {summary.settled} queued"))

    stuck = data.stuck_after_seconds
    longest = summary.max_wait
    rows.append(_row(pool, "queue_blocking", f"<= {_minutes(stuck)} wait", longest, _minutes(longest or 0),
                     ok=longest is not None and longest <= stuck, detail=f"{summary.waits} jobs"))

    fallback_since = now - FALLBACK_WINDOW
    recent = data.jobs_in_fallback_window
    if recent is None:
        recent = sum(1 for j in data.jobs if j.created is not None and j.created >= fallback_since)
    # No rollback and no job in 30 days says nothing about the pool: that is "no data", not a 0% pass.
    known = bool(data.rollback_periods) or recent > 0
    share = in_force_share(data.rollback_periods, fallback_since, now) if known else None
    rows.append(_row(pool, "fallback_activation", f"< {goal.fallback_activation:.0%}", share, _pct(share or 0),
                     ok=share is not None and share < goal.fallback_activation,
                     detail=f"{len(data.rollback_periods)} rollback periods"))
    return rows


def rule_of(data: PoolInput) -> Rule:
    return Rule(failed=data.failed_conclusions, ignored=data.ignored_conclusions,
                stuck_after_seconds=data.stuck_after_seconds)


def score_pool(data: PoolInput, *, now: float, window: int = WEEK) -> list[Row]:
    """The seven rows of one pool from its job records, over the last `window` seconds."""
    summary = summarize(data.jobs, now - window, math.nextafter(now, math.inf), now=now, rule=rule_of(data))
    return rows_for(data, summary, now=now)


def score(pools: Iterable[PoolInput], *, now: float, window: int = WEEK) -> list[Row]:
    return [row for data in pools for row in score_pool(data, now=now, window=window)]


__all__ = [  # the pure pieces callers and tests take from here, wherever they live
    "COMPLETED_CONCLUSIONS", "FAIL", "NO_DATA", "PASS", "JobTimes", "PoolInput", "Row", "Rule", "Summary", "Targets",
    "in_force_share", "peak_concurrency", "percentile", "periods_from_history", "rows_for", "score", "score_pool",
]
