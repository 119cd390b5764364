"""The watchdog's pure rules: overdue, force due, stranded thresholds, why not re-run, the dashboard line."""

from __future__ import annotations

import pytest

from runnerguard.domain import watchdog as rules
from runnerguard.domain.pools import Pool

LAPTOP = Pool("laptop", ("self-hosted", "laptop"), max_run_seconds=5400)
GPU = Pool("gpu", ("self-hosted", "gpu"))
OFF = Pool("off", ("self-hosted", "off"), retry_runner_failures=0)


@pytest.mark.parametrize(("seconds", "text"), [(0, "0 s"), (-5, "0 s"), (119, "119 s"), (120, "2 min"),
                                               (5400, "90 min"), (7200, "2 h"), (7500, "2 h 5 min")])
def test_durations_read_as_a_person_says_them(seconds: float, text: str) -> None:
    assert rules.duration_text(seconds) == text


def test_overdue_counts_from_the_start_and_only_past_the_limit() -> None:
    assert not rules.overdue(1000.0, now=1000.0 + 5400, max_run=5400)
    assert rules.overdue(1000.0, now=1000.0 + 5401, max_run=5400)
    assert not rules.overdue(None, now=1e9, max_run=5400)  # never started: the stranded check's, not ours
    assert not rules.overdue(0.0, now=1e9, max_run=None)
    assert rules.force_due(100.0, now=400.0, force_after=300) and not rules.force_due(100.0, now=399.0,
                                                                                      force_after=300)


def test_stranded_after_is_the_smallest_max_run_of_the_jobs_pools_else_6h() -> None:
    pools = (LAPTOP, GPU, Pool("quick", ("self-hosted", "quick"), max_run_seconds=600))
    assert rules.stranded_after(pools, ["laptop", "gpu"]) == 5400
    assert rules.stranded_after(pools, ["gpu"]) == 6 * 3600
    assert rules.stranded_after(pools, []) == 6 * 3600
    assert rules.stranded_after(pools, ["laptop", "quick"]) == 600
    assert rules.shortest_stranded_after(pools) == 600 and rules.shortest_stranded_after((GPU,)) == 6 * 3600


@pytest.mark.parametrize(("record", "cause", "pools", "refused"), [
    ({"run_attempt": 1}, "runner", (LAPTOP,), None),
    ({"run_attempt": 1}, "code", (LAPTOP,), "cause is code"),
    ({"run_attempt": 1}, "timeout", (LAPTOP,), "cause is timeout"),
    ({"run_attempt": 1}, None, (LAPTOP,), "cause is not known yet"),
    ({"run_attempt": 2}, "runner", (LAPTOP,), "attempt 2, not the first"),
    ({}, "runner", (LAPTOP,), "attempt None, not the first"),
    ({"run_attempt": 1}, "runner", (), "no pool of the policy"),
    ({"run_attempt": 1}, "runner", (LAPTOP, OFF), "retry_runner_failures = 0 on pool off"),
])
def test_why_a_failed_job_is_not_rerun(record: dict[str, object], cause: str | None, pools: tuple[Pool, ...],
                                       refused: str | None) -> None:
    assert rules.rerun_refusal(record, cause, pools) == refused


def test_the_dashboard_line_says_what_and_when() -> None:
    assert rules.line(None) is None and rules.line({}) is None and rules.line({"pool": "laptop"}) is None
    line = rules.line({"cancelled_at": 1796140800.0, "forced_at": 1796141100.0, "reason": "in progress 2 h"})
    assert line == ("watchdog: cancelled 2026-12-01T16:00:00Z, force-cancelled 2026-12-01T16:05:00Z "
                    "(in progress 2 h)")
    assert rules.line({"rerun_at": 1796140800.0}) == "watchdog: re-run 2026-12-01T16:00:00Z"
