"""Read a pool's recent job times from the time indexes (no full records where they can be avoided).

A job record is a few KB of JSON (it keeps every snapshot); 30 days of a busy pool is tens of thousands of them,
and parsing them all would cost a dashboard render seconds. The per-pool indexes already hold each job's created,
started and completed time as scores, so one ZRANGEBYSCORE and four ZMSCOREs give the times of every job in the
window; only the few a score cannot place (running, or cancelled) are loaded in full.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import redis

from runnerguard.domain.rollup import JobTimes, Rule, Summary, bucket_edges, summarize
from runnerguard.domain.scorecard import periods_from_history
from runnerguard.store import job_members, jobstore, keys, rollback_state, time_buckets

# Jobs created this long before a bucket may still run, or finish, inside it (GitHub's own job limit is 6 h of
# run time; a job queued and run for longer than this is missed by the bucket it ends in).
LOOKBACK = 8 * 3600
SETTLE = 12 * 3600  # a bucket that ended this long ago no longer changes: its summary is kept
SUMMARY_TTL = 86400  # and recomputed daily, so a late redelivery still shows up within a day
CHUNK = 2000


def job_times(client: redis.Redis, pool: str, since: float, until: float) -> list[JobTimes]:
    """Times of the pool's jobs created in [since - LOOKBACK, until], in created order.

    Each index is read as ranges (member and score: one per bucket of the time-bucketed created, started,
    finished and failed indexes) and joined here by member, which costs less than sending the members back for
    ZMSCORE. A finished job is "failure" when the failed index holds it, else "success": the indexes keep no
    finer conclusion (timed_out counts as a failure, neutral as a success). Jobs the indexes cannot place
    (running, or cancelled or skipped, which the finished index leaves out) are read from their records.
    """
    low = since - LOOKBACK
    # every index but waiting is time-bucketed (store/time_buckets.py): a script call per index, one floor read
    now = time.time()
    floor = job_members.history_floor(client, now)
    created_pairs = time_buckets.pairs(client, job_members.pool_created(pool), low, until, now=now, floor=floor)
    started_pairs, finished_pairs, failed_pairs = (
        time_buckets.pairs(client, index(pool), low, None, now=now, floor=floor)
        for index in (job_members.pool_started, job_members.pool_finished, job_members.pool_failed))
    # ZRANGE through execute_command: zrange's reply conversion costs more than the query.
    waiting_raw = client.execute_command("ZRANGE", keys.pool_waiting(pool), 0, -1)  # type: ignore[no-untyped-call]
    started, finished = dict(started_pairs), dict(finished_pairs)
    failed, waiting = {member for member, _ in failed_pairs}, set(waiting_raw)
    times: list[JobTimes | None] = []
    unsure: dict[str, int] = {}  # member -> its place, so the result stays in created order without a sort
    for member, created in created_pairs:
        ended = finished.get(member)
        if ended is not None:
            times.append(JobTimes(created, started.get(member), ended,
                                  "failure" if member in failed else "success"))
        elif member in waiting:
            times.append(JobTimes(created))
        else:
            unsure[member.decode()] = len(times)  # running, or ended in an ignored conclusion: ask the record
            times.append(None)
    members = list(unsure)
    for start in range(0, len(members), CHUNK):
        for record in jobstore.load(client, members[start:start + CHUNK]):
            times[unsure[jobstore.member(record)]] = JobTimes(
                record.get("created_ts"), record.get("started_ts"), record.get("completed_ts"),
                record.get("conclusion"))
    return [t for t in times if t is not None]


def _runs(indexes: Sequence[int]) -> list[list[int]]:
    """[1, 2, 3, 7, 8] -> [[1, 2, 3], [7, 8]]."""
    runs: list[list[int]] = []
    for i in indexes:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def summaries(client: redis.Redis, pool: str, *, since: float, now: float, step: int, rule: Rule) -> list[Summary]:
    """Per-bucket summaries over [since, now]: settled buckets from Redis when kept, the rest folded from the indexes.

    A warm render reads only the last ~SETTLE + LOOKBACK hours of jobs, whatever the history holds.
    """
    edges = bucket_edges(since, now, step)
    digest = rule.digest()
    names = [keys.dashboard_summary(pool, step, int(start), digest) if end <= now - SETTLE else None
             for start, end in edges]
    kept = client.mget([n for n in names if n]) if any(names) else []
    found: list[Summary | None] = []
    raws = iter(kept)
    for name in names:
        raw = next(raws) if name else None
        found.append(Summary.from_json(raw) if raw else None)
    missing = [i for i, summary in enumerate(found) if summary is None]
    pipe = client.pipeline(transaction=False)
    # One read per run of adjacent missing buckets: an old bucket whose summary expired costs its own hours,
    # not a read of everything from it to now.
    for run in _runs(missing):
        jobs = job_times(client, pool, edges[run[0]][0], edges[run[-1]][1])
        created = [j.created or 0.0 for j in jobs]  # ascending: the index returns them so
        for i in run:
            start, end = edges[i]
            # only the jobs that can touch this bucket: created from LOOKBACK before it to its end
            nearby = jobs[bisect_left(created, start - LOOKBACK):bisect_left(created, end)]
            summary = found[i] = summarize(nearby, start, end, now=now, rule=rule)
            name = names[i]
            if name is not None:
                # staggered expiry: buckets computed together are not all recomputed by the same render
                spread = int(start // step) % 48 * 900
                pipe.set(name, summary.to_json(), ex=SUMMARY_TTL + spread)
    pipe.execute()
    return [s for s in found if s is not None]


def failure_rate_series(client: redis.Redis, pool: str, points: Iterable[float], window: float = 86400
                        ) -> list[tuple[float, float | None]]:
    """(t, failed/finished over (t - window, t]) at each point, from the bucketed indexes: each bucket wholly
    inside some window is counted once (ZCARD), the buckets a window's bounds fall in and the previous release's
    whole sets by score (a week of 56 rolling days: ~1,150 ZCARDs and 168 ZCOUNTs an index, each O(1) or O(log n)
    on a small set; one script call, which names the ZCARDed buckets itself)."""
    ts = list(points)
    finished_index, failed_index = job_members.pool_finished(pool), job_members.pool_failed(pool)
    windows = [time_buckets.Window(index, t - window, t, open_low=True)
               for t in ts for index in (finished_index, failed_index)]
    now = time.time()
    counts = time_buckets.tally(client, windows, now=now, floor=job_members.history_floor(client, now))
    series: list[tuple[float, float | None]] = []
    for i, t in enumerate(ts):
        finished, failed = int(counts[2 * i]), int(counts[2 * i + 1])
        series.append((t, failed / finished if finished else None))
    return series


def rollback_periods(client: redis.Redis) -> dict[str, list[tuple[float, float | None]]]:
    """Per pool, the periods some repository of it had a rollback in force (from the state histories)."""
    periods: dict[str, list[tuple[float, float | None]]] = {}
    for row in rollback_state.list_states(client):
        entries = rollback_state.history(client, row.pool, row.repo)
        periods.setdefault(row.pool, []).extend(periods_from_history(entries))
    return periods


class ServedCache(Protocol):
    """What cache_counts needs of a cache spec (prewarm.specs.CacheSpec), read-only."""

    @property
    def name(self) -> str: ...

    @property
    def pools(self) -> tuple[str, ...]: ...


def cache_counts(rows: Iterable[Mapping[str, Any]], caches: Sequence[ServedCache], pool: str) -> tuple[int, int]:
    """(hits, lookups) of the caches that serve the pool; with no caches declared, every cache serves it. A row with
    job-side answers (hit / waited, reported by the host's agent) counts those instead of its pre-warms."""
    serving = {c.name for c in caches if pool in c.pools}
    hits = lookups = 0
    for row in rows:
        if caches and row.get("name") not in serving:
            continue
        job_hits, job_waited = int(row.get("job_hits") or 0), int(row.get("job_waited") or 0)
        if job_hits + job_waited:
            # the job-side answers, where the host's agent reported any: the hit rate a person cares about
            hits += job_hits
            lookups += job_hits + job_waited
            continue
        hits += int(row.get("hits") or 0)
        lookups += int(row.get("hits") or 0) + int(row.get("misses") or 0) + int(row.get("errors") or 0)
    return hits, lookups
