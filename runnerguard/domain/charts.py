"""Chart lines for the dashboard from per-bucket summaries: pure (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runnerguard.domain.rollup import Summary


@dataclass(frozen=True)
class Series:
    """One line of a chart: points (t, value or None for a gap)."""

    name: str
    points: tuple[tuple[float, float | None], ...]


def _mid(summary: Summary) -> float:
    return (summary.start + summary.end) / 2


def queue_series(parts: Sequence[Summary]) -> list[Series]:
    return [Series("p50", tuple((_mid(s), s.queue_p50) for s in parts)),
            Series("p95", tuple((_mid(s), s.queue_p95) for s in parts))]


def run_series(parts: Sequence[Summary]) -> list[Series]:
    return [Series("p50", tuple((_mid(s), s.run_p50) for s in parts)),
            Series("p95", tuple((_mid(s), s.run_p95) for s in parts))]


def running_series(parts: Sequence[Summary]) -> Series:
    return Series("running", tuple((_mid(s), float(s.peak)) for s in parts))
