"""Rollback triggers as pure functions: counts and thresholds in, a decision with its reason out."""

from __future__ import annotations

from dataclasses import dataclass

FAILURE_RATE, STUCK_QUEUE, MANUAL, HOST_DOWN = "failure_rate", "stuck_queue", "manual", "host_down"


def human_duration(seconds: int) -> str:
    """'24h', '2h', '7d', '90m': days only from 3 days on, as people say "the last 24h", not "the last 1d"."""
    for unit, size, minimum in (("d", 86400, 3 * 86400), ("h", 3600, 3600), ("m", 60, 60)):
        if seconds >= minimum and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class CountingRule:
    """Which conclusions count as failed, which count neither way, and which failure causes count (issue #14)."""

    # startup_failure is a run's conclusion, never a job's: it is not listed.
    failed: frozenset[str] = frozenset({"failure", "timed_out"})
    ignored: frozenset[str] = frozenset({"cancelled", "skipped"})
    counted: frozenset[str] = frozenset({"runner", "timeout", "unknown"})
    count_forks: bool = False


@dataclass(frozen=True)
class Decision:
    """Whether a trigger fires for a pool, and the evidence, stated as a person would read it."""

    trigger: str
    pool: str
    fire: bool
    reason: str
    window_seconds: int
    finished: int = 0
    failed: int = 0
    threshold: float = 0.0
    min_jobs: int = 0
    waiting: int = 0
    started: int = 0

    @property
    def rate(self) -> float | None:
        return self.failed / self.finished if self.finished else None

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "rate": self.rate}


def failure_rate(pool: str, *, finished: int, failed: int, window_seconds: int, threshold: float,
                 min_jobs: int) -> Decision:
    """Fires when more than `threshold` of at least `min_jobs` finished jobs failed in the window."""
    window = human_duration(window_seconds)
    rate = failed / finished if finished else 0.0
    fire = finished >= min_jobs and rate > threshold
    if fire:
        reason = f"{rate:.0%} of {finished} jobs failed in {window}"
    elif finished < min_jobs:
        reason = f"only {finished} finished jobs in {window} (needs {min_jobs})"
    else:
        reason = f"{rate:.0%} of {finished} jobs failed in {window} (threshold {threshold:.0%})"
    return Decision(trigger=FAILURE_RATE, pool=pool, fire=fire, reason=reason, window_seconds=window_seconds,
                    finished=finished, failed=failed, threshold=threshold, min_jobs=min_jobs)


def stuck_queue(pool: str, *, waiting_longer: int, started_recently: int, after_seconds: int,
                min_jobs: int) -> Decision:
    """Fires when at least `min_jobs` jobs have waited longer than T and no job of the pool started within T."""
    window = human_duration(after_seconds)
    fire = waiting_longer >= min_jobs and started_recently == 0
    if fire:
        reason = f"{waiting_longer} jobs queued longer than {window} and none started"
    else:
        reason = f"{waiting_longer} jobs queued longer than {window}, {started_recently} started"
    return Decision(trigger=STUCK_QUEUE, pool=pool, fire=fire, reason=reason, window_seconds=after_seconds,
                    min_jobs=min_jobs, waiting=waiting_longer, started=started_recently)


def host_down(pool: str, *, hosts: int, unavailable: list[str], waiting_longer: int, after_seconds: int) -> Decision:
    """Fires when every host of the pool is down or its runner offline (`unavailable`: one line of evidence per host)
    while at least one job of the pool has waited longer than T: nothing will take that job."""
    window = human_duration(after_seconds)
    every = hosts > 0 and len(unavailable) == hosts
    fire = every and waiting_longer > 0
    jobs = f"{waiting_longer} job{'s' if waiting_longer != 1 else ''} waiting longer than {window}"
    if every:
        reason = f"every host of {pool} is down ({'; '.join(unavailable)}); {jobs}"
    elif hosts == 0:
        reason = f"pool {pool} names no hosts"
    else:
        reason = f"{hosts - len(unavailable)} of {hosts} hosts of {pool} up; {jobs}"
    return Decision(trigger=HOST_DOWN, pool=pool, fire=fire, reason=reason, window_seconds=after_seconds, min_jobs=1,
                    waiting=waiting_longer)


def manual(pool: str, *, requested_by: str = "an admin", note: str = "") -> Decision:
    reason = f"requested by {requested_by}" + (f": {note}" if note else "")
    return Decision(trigger=MANUAL, pool=pool, fire=True, reason=reason, window_seconds=0)
