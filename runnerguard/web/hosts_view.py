"""The dashboard's Runner hosts rows: state, last seen, runner, disks against cleanup_at, the job it runs."""

from __future__ import annotations

from typing import Any

import redis

from config import Policy
from runnerguard.domain.timeline import format_time
from runnerguard.store import hosts
from runnerguard.web import svg


def host_views(client: redis.Redis, policy: Policy, *, now: float) -> list[dict[str, Any]]:
    rows = []
    for status in hosts.list_statuses(client, policy, now=now):
        row = status.public()
        row["seen"] = format_time(status.last_seen) or "never"
        row["ago"] = svg.seconds_fmt(now - status.last_seen) + " ago" if status.last_seen is not None else ""
        row["disks"] = [{"path": path, "used_ratio": usage["used_ratio"], "free": usage["free"],
                         "bar": svg.bar(usage["used_ratio"], target=status.cleanup_at),
                         "over": (usage["used_ratio"] or 0) >= status.cleanup_at}
                        for path, usage in sorted(status.disk.items())]
        row["pools"] = policy.host_pools(status.name)
        rows.append(row)
    return rows
