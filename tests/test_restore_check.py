"""The auto-restore rule: every host well (up, runner listening, disks below cleanup_at) for restore_after."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runnerguard.domain.restore import auto_restore_check

NOW = 1_800_000_000.0
SIX_HOURS = 6 * 3600


@dataclass(frozen=True)
class Host:
    name: str = "laptop-extra"
    state: str = "up"
    runner: str = "listening"
    disk: dict[str, dict[str, Any]] = field(default_factory=lambda: {"/home/r/actions-runner": {"used_ratio": 0.41}})
    cleanup_at: float = 0.80
    healthy_since: float | None = NOW - SIX_HOURS - 60


def test_a_host_well_for_restore_after_with_no_runner_failure_is_ready() -> None:
    check = auto_restore_check([Host()], now=NOW, restore_after=SIX_HOURS, runner_failures=0)
    assert check.ready
    assert check.evidence[0] == ("laptop-extra: up, runner listening, disk 41% of /home/r/actions-runner "
                                 "(cleanup at 80%); well for 6h 1m")
    assert "no job failed for the runner's own reasons in the last 6h" in check.evidence


def test_each_condition_alone_holds_the_restore_back() -> None:
    cases = [
        Host(healthy_since=NOW - SIX_HOURS + 60),  # well, but not for long enough
        Host(state="stale"),
        Host(state="down", healthy_since=None),
        Host(runner="offline"),
        Host(runner="unknown"),
        Host(disk={"/w": {"used_ratio": 0.85}}),  # above cleanup_at
        Host(disk={}),  # no disk report: nothing proves the disk is fine
        Host(healthy_since=None),
    ]
    for host in cases:
        assert not auto_restore_check([host], now=NOW, restore_after=SIX_HOURS, runner_failures=0).ready, host
    # every host must be well, not just one
    assert not auto_restore_check([Host(), Host(name="b", runner="offline")], now=NOW, restore_after=SIX_HOURS,
                                  runner_failures=0).ready
    failed = auto_restore_check([Host()], now=NOW, restore_after=SIX_HOURS, runner_failures=2)
    assert not failed.ready and "2 job(s) failed for the runner's own reasons in the last 6h" in failed.evidence
    assert not auto_restore_check([], now=NOW, restore_after=SIX_HOURS, runner_failures=0).ready
