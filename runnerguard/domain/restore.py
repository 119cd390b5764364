"""When a rolled-back pool may go back to its own runners by itself (`restore = "auto"`): pure, from host reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from runnerguard.domain.rules import human_duration

MANUAL, AUTO = "manual", "auto"
RESTORE_MODES = (MANUAL, AUTO)
DEFAULT_RESTORE_AFTER = 6 * 3600
WELL_RUNNER_STATES = ("listening", "busy")


class HostHealth(Protocol):
    """What a host report says (runnerguard.domain.hosts.HostStatus has these)."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def runner(self) -> str: ...
    @property
    def disk(self) -> Mapping[str, Mapping[str, Any]]: ...
    @property
    def cleanup_at(self) -> float: ...
    @property
    def healthy_since(self) -> float | None: ...


@dataclass(frozen=True)
class RestoreCheck:
    ready: bool
    reason: str  # one line a person reads, for the log and the state
    evidence: tuple[str, ...]  # one line per host, for the restore PR's body


def _span(seconds: float) -> str:
    hours, minutes = divmod(int(seconds // 60), 60)
    return f"{hours}h {minutes}m" if hours and minutes else f"{hours}h" if hours else f"{minutes}m"


def _fullest(host: HostHealth) -> tuple[str, float] | None:
    ratios = [(path, float(usage.get("used_ratio") or 0.0)) for path, usage in host.disk.items()]
    return max(ratios, key=lambda pair: pair[1]) if ratios else None


def _host_line(host: HostHealth, now: float) -> tuple[bool, str, float]:
    """(well now, the line, how long it has been well)."""
    fullest = _fullest(host)
    disk = f"disk {fullest[1]:.0%} of {fullest[0]} (cleanup at {host.cleanup_at:.0%})" if fullest else "no disk report"
    well_for = now - host.healthy_since if host.healthy_since is not None else 0.0
    well = (host.state == "up" and host.runner in WELL_RUNNER_STATES and fullest is not None
            and fullest[1] < host.cleanup_at and host.healthy_since is not None)
    since = f"well for {_span(well_for)}" if well else "not well"
    return well, f"{host.name}: {host.state}, runner {host.runner}, {disk}; {since}", well_for


def auto_restore_check(hosts: Sequence[HostHealth], *, now: float, restore_after: int,
                       runner_failures: int) -> RestoreCheck:
    """Ready once every host of the pool has been up, its runner listening (or busy) and its disks below
    `cleanup_at` for `restore_after`, with no failure of the runner's own in that time among jobs still on it."""
    if not hosts:
        return RestoreCheck(False, "the pool names no host that reports: restore it by hand", ())
    lines = []
    ready = True
    for host in hosts:
        well, line, well_for = _host_line(host, now)
        lines.append(line)
        ready = ready and well and well_for >= restore_after
    window = human_duration(restore_after)
    if runner_failures:
        lines.append(f"{runner_failures} job(s) failed for the runner's own reasons in the last {window}")
        ready = False
    else:
        lines.append(f"no job failed for the runner's own reasons in the last {window}")
    reason = (f"every host well for {window}" if ready
              else f"waiting: every host must be well for {window} first")
    return RestoreCheck(ready, reason, tuple(lines))
