"""The host's health for /agent/v1/report: disks, memory, load, uptime, the runner listener and its service unit."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from runnerguard.agent.runner_log import ListenerState, read_state
from runnerguard.prewarm.specs import UNIT_NAME, HostSpec

ServiceState = Literal["active", "inactive", "failed"]
SYSTEMCTL_TIMEOUT = 5.0

DiskUsage = Callable[[Any], Any]


def existing(path: Path) -> Path:
    """`path`, or its nearest existing parent (a cache root before its first install)."""
    return path if path.exists() else next((p for p in path.parents if p.exists()), Path("/"))


def disk(paths: Iterable[Path], *, disk_usage: DiskUsage = shutil.disk_usage) -> dict[str, dict[str, int]]:
    """Total, used and free bytes of the filesystem of each path, keyed by the path as configured."""
    out: dict[str, dict[str, int]] = {}
    for path in paths:
        try:
            usage = disk_usage(existing(path))
        except OSError:
            continue
        out[str(path)] = {"total": int(usage[0]), "used": int(usage[1]), "free": int(usage[2])}
    return out


def memory(meminfo: Path = Path("/proc/meminfo")) -> dict[str, int]:
    """MemTotal and MemAvailable in bytes; {} where /proc says nothing (not Linux)."""
    wanted = {"MemTotal": "total", "MemAvailable": "available"}
    out: dict[str, int] = {}
    try:
        for line in meminfo.read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in wanted and rest.split():
                out[wanted[key]] = int(rest.split()[0]) * 1024  # the kernel says kB and means KiB
    except (OSError, ValueError):
        return {}
    return out


def load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def uptime(proc_uptime: Path = Path("/proc/uptime")) -> float | None:
    try:
        return float(proc_uptime.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def service_state(unit: str | None, *, systemctl: str = "systemctl") -> ServiceState | None:
    """`systemctl is-active UNIT` for the unit the policy names (never a payload); None if it cannot tell."""
    if unit is None or not UNIT_NAME.fullmatch(unit):
        return None
    try:
        # argv, no shell; "--" so even a unit name starting oddly is never an option
        done = subprocess.run([systemctl, "is-active", "--", unit], capture_output=True, text=True,
                              timeout=SYSTEMCTL_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    word = (done.stdout.split() or [""])[0]
    if word in ("active", "reloading"):
        return "active"
    if word == "failed":
        return "failed"
    if word in ("inactive", "activating", "deactivating", "maintenance"):
        return "inactive"
    return None


def runner(host: HostSpec | None, *, systemctl: str = "systemctl") -> tuple[ListenerState, ServiceState | None]:
    """The listener's state from its log, overruled by a service unit that is not running."""
    if host is None:
        return ListenerState("unknown", "this host has no [[host]] table in the policy"), None
    listener = read_state(host.runner_dir)
    service = service_state(host.service, systemctl=systemctl)
    if service in ("inactive", "failed"):
        # a dead service's last log line may still say "Listening for Jobs"
        listener = ListenerState("offline", f"service {service}")
    return listener, service


def runner_json(listener: ListenerState, service: ServiceState | None) -> dict[str, Any]:
    return {"state": listener.state, "detail": listener.detail,
            "job": {"name": listener.job} if listener.job else None, "service": service}
