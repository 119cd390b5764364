"""Job times folded into per-time-bucket summaries that merge exactly: pure (the scorecard's and charts' arithmetic).

A week of a busy pool is tens of thousands of jobs; a summary of a settled 6-hour bucket never changes, so the
dashboard keeps settled summaries and folds only the open buckets on each render. Every scorecard figure is a sum,
a max or a median of a concatenated list over buckets, so merging summaries gives the same answer as one pass.
"""

from __future__ import annotations

import hashlib
import json
import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from runnerguard.domain.rules import CountingRule

COMPLETED_CONCLUSIONS = frozenset({"success", "failure"})


class JobTimes(NamedTuple):
    """What the scorecard needs of one job (epoch seconds; None where it has not happened).

    A named tuple rather than a dataclass: a week of a busy pool is tens of thousands of these.
    """

    created: float | None
    started: float | None = None
    completed: float | None = None
    conclusion: str | None = None

    @property
    def run_seconds(self) -> float | None:
        if self.started is None or self.completed is None:
            return None
        return max(0.0, self.completed - self.started)

    @property
    def queue_seconds(self) -> float | None:
        if self.created is None or self.started is None:
            return None
        return max(0.0, self.started - self.created)


@dataclass(frozen=True)
class Rule(CountingRule):
    """How a pool counts (the one CountingRule), and how long a job may wait before it is stuck."""

    stuck_after_seconds: int = 2 * 3600

    def digest(self) -> str:
        text = (f"{','.join(sorted(self.failed))}|{','.join(sorted(self.ignored))}|{self.stuck_after_seconds}"
                f"|{','.join(sorted(self.counted))}|{self.count_forks}")
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Summary:
    """What happened in [start, end): jobs are placed by the time that matters for each figure."""

    start: float
    end: float
    settled: int = 0  # created in the bucket and done, or in flight longer than the stuck threshold
    reached: int = 0  # of those, ended in success or failure
    counted: int = 0  # completed in the bucket, conclusion not ignored
    failed: int = 0  # of those, failed
    success_runs: list[float] = field(default_factory=list)  # run seconds of successes completed in the bucket
    ran: int = 0  # jobs running at some moment of the bucket
    peak: int = 0  # most jobs running at once within the bucket
    waits: int = 0  # jobs created in the bucket with a wait known so far
    max_wait: float | None = None
    queue_p50: float | None = None  # chart only: not merged
    queue_p95: float | None = None
    run_p50: float | None = None
    run_p95: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Summary:
        return cls(**json.loads(raw))


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def peak_concurrency(spans: Iterable[tuple[float, float]], since: float, until: float) -> int:
    """Most jobs running at the same moment within [since, until].

    The level right after the i-th start (starts sorted) is i + 1 minus the jobs that ended by then; ends at the
    very instant of a start count as ended, since a job handing over to the next is not concurrency.
    """
    starts: list[float] = []
    ends: list[float] = []
    for start, end in spans:
        begin, finish = max(start, since), min(end, until)
        if finish > begin:
            starts.append(begin)
            ends.append(finish)
    starts.sort()
    ends.sort()
    return max((i + 1 - bisect_right(ends, t) for i, t in enumerate(starts)), default=0)


def summarize(jobs: Iterable[JobTimes], start: float, end: float, *, now: float, rule: Rule) -> Summary:
    """Fold the jobs into the summary of [start, end) as seen at `now` (one pass, then a sort or two)."""
    out = Summary(start, end)
    queue_values: list[float] = []
    run_values: list[float] = []
    spans: list[tuple[float, float]] = []
    failed_set, ignored, stuck = rule.failed, rule.ignored, rule.stuck_after_seconds
    waits: list[float] = []
    for created, started, completed, conclusion in jobs:
        if created is not None and start <= created < end:
            if completed is not None or now - created > stuck:
                out.settled += 1
                out.reached += conclusion in COMPLETED_CONCLUSIONS
            if started is not None:
                waits.append(max(0.0, started - created))
            elif completed is None:
                waits.append(now - created)  # still waiting: it has waited this long so far
        if started is None:
            continue
        if created is not None and start <= started < end:
            queue_values.append(max(0.0, started - created))
        if completed is not None and start <= completed < end:
            run = max(0.0, completed - started)
            run_values.append(run)
            if conclusion not in ignored:
                out.counted += 1
                out.failed += conclusion in failed_set
            if conclusion == "success":
                out.success_runs.append(round(run, 1))
        finish = completed if completed is not None else now
        if started < end and finish > start:
            spans.append((started, finish))
    out.ran = len(spans)
    out.peak = peak_concurrency(spans, start, min(end, now))
    out.waits = len(waits)
    out.max_wait = max(waits) if waits else None
    queue_values.sort()
    run_values.sort()
    out.queue_p50, out.queue_p95 = percentile(queue_values, 0.5), percentile(queue_values, 0.95)
    out.run_p50, out.run_p95 = percentile(run_values, 0.5), percentile(run_values, 0.95)
    return out


def merge(parts: Sequence[Summary]) -> Summary:
    """One summary over all the parts (adjacent buckets): sums, maxima, and the success runs put together."""
    if not parts:
        return Summary(0.0, 0.0)
    out = Summary(min(p.start for p in parts), max(p.end for p in parts))
    for p in parts:
        out.settled += p.settled
        out.reached += p.reached
        out.counted += p.counted
        out.failed += p.failed
        out.success_runs.extend(p.success_runs)
        out.ran += p.ran
        out.peak = max(out.peak, p.peak)
        out.waits += p.waits
        if p.max_wait is not None:
            out.max_wait = p.max_wait if out.max_wait is None else max(out.max_wait, p.max_wait)
    return out


def bucket_edges(since: float, until: float, step: int) -> list[tuple[float, float]]:
    """[start, end) buckets on multiples of `step` (so a settled bucket keeps its identity), covering since..until;
    the last one ends just after `until` so a job completed at `until` is inside."""
    first = math.floor(since / step) * step
    edges = []
    t = float(first)
    while t <= until:
        edges.append((t, min(t + step, math.nextafter(until, math.inf))))
        t += step
    return edges
