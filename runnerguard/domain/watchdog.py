"""The job watchdog's rules as pure data: when a job is overdue, stranded or worth one more try, and its words."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runnerguard.domain.pools import Pool
from runnerguard.domain.timeline import format_time

STRANDED_AFTER = 6 * 3600  # a job of a pool without max_run is asked about after this long without an end
CHECK_EVERY = 30 * 60  # GitHub is asked about one job at most this often
# The watchdog's actions, as the metric `runnerguard_watchdog_total{action}` and the notices name them.
CANCEL, FORCE_CANCEL, RERUN = "cancel", "force_cancel", "rerun"
NOTICE_STATES = {CANCEL: "cancelled", FORCE_CANCEL: "force_cancelled", RERUN: "rerun"}
# What a person reads: in notices, the API and the dashboard's latest jobs.
CANCEL_REASON = "in progress {ran} on pool {pool}, over its max_run of {limit}"
SUMMARY = {
    CANCEL: "Cancelled {name} in {repo}: it ran {ran} on pool {pool}, over its max_run of {limit}.",
    FORCE_CANCEL: "Force-cancelled {name} in {repo}: still running {after} after the watchdog cancelled it.",
    RERUN: "Re-ran {name} in {repo} once: its runner on pool {pool} was lost ({evidence}).",
}
NEXT_STEP = {
    CANCEL: "Read the job's log to see where it hung; raise the pool's max_run if the job was only slow.",
    FORCE_CANCEL: "The runner may be wedged: look at the runner host and restart its service.",
    RERUN: "Nothing to do if attempt 2 passes; if it fails the same way, look at the pool's runners.",
}
BLOCKED_SUMMARY = ("The watchdog cannot {action} jobs in {repo}: the App lacks the `{permission}` permission. "
                   "Grant it in the App's settings and accept it on the installation.")


def duration_text(seconds: float) -> str:
    """'2 h 5 min', '90 min', '45 s': what a person reads in a reason."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def overdue(started_ts: float | None, *, now: float, max_run: int | None) -> bool:
    """A running job past its pool's max_run (measured from its start, as GitHub's own timeout is)."""
    return max_run is not None and started_ts is not None and now - started_ts > max_run


def force_due(cancelled_at: float, *, now: float, force_after: int) -> bool:
    return now - cancelled_at >= force_after


def stranded_after(pools: Sequence[Pool], names: Sequence[str]) -> int:
    """How long a job of these pools may go without an end before GitHub is asked: the smallest max_run, else 6 h."""
    limits = [p.max_run_seconds for p in pools if p.name in names and p.max_run_seconds is not None]
    return min(limits) if limits else STRANDED_AFTER


def shortest_stranded_after(pools: Sequence[Pool]) -> int:
    """The bound of the index read: no job is due before this."""
    return min([STRANDED_AFTER, *(p.max_run_seconds for p in pools if p.max_run_seconds is not None)])


def rerun_refusal(record: Mapping[str, Any], cause: str | None, pools: Sequence[Pool]) -> str | None:
    """Why a failed job is not re-run (None: re-run it). `pools` are the job's own pools from the policy."""
    if cause != "runner":
        return f"cause is {cause or 'not known yet'}"
    if record.get("run_attempt") != 1:
        return f"attempt {record.get('run_attempt')}, not the first"
    if not pools:
        return "no pool of the policy"
    off = [p.name for p in pools if p.retry_runner_failures < 1]
    if off:
        return f"retry_runner_failures = 0 on pool {off[0]}"
    return None


def line(state: Mapping[str, Any] | None) -> str | None:
    """The dashboard's watchdog line for a job: what the watchdog did and when (None when it never acted)."""
    if not state:
        return None
    parts = []
    for key, text in (("cancelled_at", "cancelled"), ("forced_at", "force-cancelled"), ("rerun_at", "re-run")):
        if isinstance(state.get(key), float):
            parts.append(f"{text} {format_time(state[key])}")
    if not parts:
        return None
    reason = state.get("reason")
    return "watchdog: " + ", ".join(parts) + (f" ({reason})" if reason else "")
