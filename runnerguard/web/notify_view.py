"""The dashboard's notifier rows: each notifier of the policy with its last result and last error."""

from __future__ import annotations

from typing import Any

import redis

from config import Policy
from runnerguard.domain.timeline import format_time
from runnerguard.store import notify_state


def rows(client: redis.Redis, policy: Policy) -> list[dict[str, Any]]:
    out = []
    for spec in policy.notifiers:
        status = notify_state.status(client, spec.name)
        out.append({"name": spec.name, "kind": spec.kind, "last_result": status.get("last_result"),
                    "last_at": format_time(status.get("last_at")),
                    "last_sent_at": format_time(status.get("last_sent_at")),
                    "last_error": status.get("last_error"),
                    "last_error_at": format_time(status.get("last_error_at"))})
    return out
