"""Runner hosts' latest reports, their statuses, the cleanups waiting to be told, the last state notified."""

from __future__ import annotations

import json
from typing import Any, cast

import redis

from config.policy import Policy
from runnerguard.domain.hosts import DEFAULT_CLEANUP_AT, HostStatus, is_healthy, next_healthy_since
from runnerguard.store import keys

REPORT_TTL = 30 * 86400  # a host gone for a month is forgotten (its name stays in the policy if declared)
MAX_PENDING_CLEANUPS = 100


def _cleanup_at(policy: Policy, name: str) -> float:
    spec = policy.host(name)
    return spec.cleanup_at if spec is not None else DEFAULT_CLEANUP_AT


def load_report(client: redis.Redis, name: str) -> dict[str, Any] | None:
    raw = client.get(keys.host_report(name))
    return json.loads(raw) if raw else None


def save_report(client: redis.Redis, policy: Policy, name: str, report: dict[str, Any], *, now: float) -> HostStatus:
    """Keep the latest report (with when it came and since when the host has been healthy); queue its cleanups."""
    previous = load_report(client, name)
    cleanup_at = _cleanup_at(policy, name)
    healthy = is_healthy(str(report["runner"]["state"]), report["disk"], cleanup_at)
    since = next_healthy_since(previous.get("healthy_since") if previous else None,
                               previous.get("received_at") if previous else None, healthy=healthy, now=now)
    stored = {**{k: v for k, v in report.items() if k != "cache_answers"}, "received_at": now, "healthy_since": since}
    pipe = client.pipeline(transaction=True)
    pipe.set(keys.host_report(name), json.dumps(stored), ex=REPORT_TTL)
    for cleanup in report.get("cleanups", []):
        pipe.rpush(keys.host_cleanups(name), json.dumps(cleanup))
    pipe.ltrim(keys.host_cleanups(name), -MAX_PENDING_CLEANUPS, -1)
    pipe.execute()
    return HostStatus.from_report(name, stored, cleanup_at=cleanup_at, now=now)


def take_cleanups(client: redis.Redis, name: str, limit: int = MAX_PENDING_CLEANUPS) -> list[dict[str, Any]]:
    """The cleanups reported since the last call, each handed out once (LPOP is atomic)."""
    popped = client.lpop(keys.host_cleanups(name), limit)
    return [json.loads(raw) for raw in cast("list[bytes]", popped or [])]


def known_names(client: redis.Redis, policy: Policy) -> list[str]:
    """Hosts the policy names, hosts holding a token, hosts with a report on record."""
    names = set(policy.host_names())
    names |= {k.decode() if isinstance(k, bytes) else str(k) for k in client.hkeys(keys.HOSTS)}
    return sorted(names)


def list_statuses(client: redis.Redis, policy: Policy, *, now: float) -> list[HostStatus]:
    names = known_names(client, policy)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.get(keys.host_report(name))
    raws = pipe.execute()
    return [HostStatus.from_report(name, json.loads(raw) if raw else None, cleanup_at=_cleanup_at(policy, name),
                                   now=now) for name, raw in zip(names, raws, strict=True)]


def get_status(client: redis.Redis, policy: Policy, name: str, *, now: float) -> HostStatus | None:
    """A host's status; None for a host neither the policy nor the token store knows."""
    report = load_report(client, name)
    if report is None and name not in policy.host_names() and not client.hexists(keys.HOSTS, name):
        return None
    return HostStatus.from_report(name, report, cleanup_at=_cleanup_at(policy, name), now=now)


def swap_notified(client: redis.Redis, name: str, state: str) -> str | None:
    """Record `state` as the last one notified and return the one before (atomic: two schedulers notify once)."""
    old = client.set(keys.host_notified(name), state, get=True)
    return old.decode() if isinstance(old, bytes) else old  # type: ignore[return-value]

