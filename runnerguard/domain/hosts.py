"""Runner hosts as their agents report them: up / stale / down from the last report, and the `/api/hosts` row."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runnerguard.errors import InvalidInput

NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
STALE_AFTER = 120  # seconds without a report (the agent reports every 30 s: four missed reports)
DOWN_AFTER = 600
UP, STALE, DOWN = "up", "stale", "down"
RUNNER_STATES = ("listening", "busy", "offline", "unknown")
DEFAULT_CLEANUP_AT = 0.80


def valid_name(value: object) -> bool:
    """A host name: 1-64 of A-Z a-z 0-9 . _ - (fullmatch: no trailing newline slips through), not only dots."""
    return isinstance(value, str) and NAME.fullmatch(value) is not None and set(value) != {"."}


def check_name(value: object) -> str:
    if not valid_name(value):
        raise InvalidInput("host name must be 1-64 characters of A-Z a-z 0-9 . _ - (and not only dots)")
    return str(value)


def state_for(last_seen: float | None, now: float) -> str:
    """up; stale after STALE_AFTER s without a report; down after DOWN_AFTER s, or when it never reported."""
    if last_seen is None:
        return DOWN
    age = now - last_seen
    if age <= STALE_AFTER:
        return UP
    return STALE if age <= DOWN_AFTER else DOWN


def disk_rows(disk: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per path: total, used, free and used_ratio (used over total; None for a zero-sized filesystem)."""
    rows: dict[str, dict[str, Any]] = {}
    for path, row in disk.items():
        total, used = int(row.get("total") or 0), int(row.get("used") or 0)
        rows[path] = {"total": total, "used": used, "free": int(row.get("free") or 0),
                      "used_ratio": round(used / total, 4) if total > 0 else None}
    return rows


def is_healthy(runner: str, disk: Mapping[str, Mapping[str, Any]], cleanup_at: float) -> bool:
    """What `healthy_since` measures, at one report: the runner listens or works, and every disk is below cleanup_at."""
    if runner not in ("listening", "busy"):
        return False
    return all((row.get("used_ratio") or 0.0) < cleanup_at for row in disk_rows(disk).values())


def next_healthy_since(previous: float | None, previous_seen: float | None, *, healthy: bool,
                       now: float) -> float | None:
    """Since when the host has been healthy without a break: a gap of reports longer than STALE_AFTER is a break."""
    if not healthy:
        return None
    if previous is not None and previous_seen is not None and now - previous_seen <= STALE_AFTER:
        return previous
    return now


@dataclass(frozen=True)
class HostStatus:
    """One runner host: its latest report and what follows from its age."""

    name: str
    last_seen: float | None
    state: str
    runner: str = "unknown"
    disk: dict[str, dict[str, Any]] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)
    uptime: float | None = None
    job: dict[str, Any] | None = None
    agent_version: str | None = None
    cleanup_at: float = DEFAULT_CLEANUP_AT
    healthy_since: float | None = None
    runner_detail: str = ""
    service: str | None = None
    cleanups: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_report(cls, name: str, report: Mapping[str, Any] | None, *, cleanup_at: float,
                    now: float) -> HostStatus:
        """The status of a host from its stored report (None: never reported)."""
        if not report:
            return cls(name=name, last_seen=None, state=DOWN, cleanup_at=cleanup_at)
        last_seen = float(report["received_at"])
        state = state_for(last_seen, now)
        runner = report.get("runner") or {}
        runner_state = str(runner.get("state") or "unknown")
        # A report that went quiet says nothing about the runner any more.
        return cls(
            name=name, last_seen=last_seen, state=state,
            runner=runner_state if state == UP else "unknown",
            disk=disk_rows(report.get("disk") or {}), memory=dict(report.get("memory") or {}),
            load=[float(x) for x in report.get("load") or []], uptime=report.get("uptime"),
            job=runner.get("job") if state == UP else None, agent_version=report.get("agent_version"),
            cleanup_at=cleanup_at,
            healthy_since=report.get("healthy_since") if state == UP else None,
            runner_detail=str(runner.get("detail") or ""), service=runner.get("service"),
            cleanups=list(report.get("cleanups") or []),
        )

    @property
    def unavailable(self) -> bool:
        """Cannot take a job: down, or up with its runner offline (what the host_down trigger counts)."""
        return self.state == DOWN or (self.state == UP and self.runner == "offline")

    def why_unavailable(self, now: float) -> str:
        if self.state == DOWN:
            if self.last_seen is None:
                return f"{self.name}: never reported"
            return f"{self.name}: no report for {_ago(now - self.last_seen)}"
        return f"{self.name}: runner offline" + (f" ({self.runner_detail[:80]})" if self.runner_detail else "")

    def public(self) -> dict[str, Any]:
        """The `/api/hosts` row."""
        return {
            "name": self.name, "last_seen": self.last_seen, "state": self.state, "runner": self.runner,
            "disk": self.disk, "memory": self.memory, "load": self.load, "uptime": self.uptime, "job": self.job,
            "agent_version": self.agent_version, "cleanup_at": self.cleanup_at, "healthy_since": self.healthy_since,
        }


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 7200:
        return f"{seconds // 3600}h"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"
