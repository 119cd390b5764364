"""Recover deliveries GitHub failed to make: list the App's hook deliveries, redeliver each GUID we never recorded."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from runnerguard.domain.freshness import canonical_delivery_id
from runnerguard.github import GitHubApp, GitHubError
from runnerguard.github.app_models import HookDelivery
from runnerguard.store import deliveries, recovery_state

log = logging.getLogger("runnerguard.services.recovery")
GITHUB_KEEPS_SECONDS = 3 * 86400  # GitHub keeps hook deliveries for 3 days: nothing older can be redelivered
ASK_AGAIN_AFTER = 30 * 60


@dataclass
class RecoveryReport:
    scanned: int = 0
    missing: int = 0
    requested: list[str] = field(default_factory=list)
    skipped_recently_asked: int = 0
    failed: list[str] = field(default_factory=list)
    checkpoint: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {"scanned": self.scanned, "missing": self.missing, "requested": len(self.requested),
                "skipped_recently_asked": self.skipped_recently_asked, "failed": len(self.failed),
                "checkpoint": self.checkpoint}


def checkpoint(client: redis.Redis) -> float | None:
    return recovery_state.checkpoint(client)


def recover(
    client: redis.Redis, github: GitHubApp, *, since: float | None = None, clock: Callable[[], float] = time.time,
    progress: Callable[[RecoveryReport], None] | None = None,
) -> RecoveryReport:
    """Ask GitHub to redeliver every delivery since the checkpoint (or `since`) that runnerguard has not recorded.

    A GUID already recorded is never redelivered; one asked for in the last 30 minutes is not asked again. The
    checkpoint only moves past deliveries that are recorded, so a failed or pending redelivery is looked at again
    on the next run (until GitHub itself forgets it, after 3 days).
    """
    now = clock()
    floor = now - GITHUB_KEEPS_SECONDS
    start = max(since if since is not None else (checkpoint(client) or floor), floor)
    report = RecoveryReport()
    newest_by_guid: dict[str, HookDelivery] = {}
    # GitHub lists newest first and every attempt separately: group the attempts by GUID.
    for item in github.iter_hook_deliveries():
        if item.delivered_at.timestamp() < start:
            break
        report.scanned += 1
        # The intake records ids in canonical form, and lets a stale body through when its id was asked for here.
        guid = canonical_delivery_id(item.guid)
        known = newest_by_guid.get(guid)
        if known is None or item.delivered_at > known.delivered_at:
            newest_by_guid[guid] = item
    oldest_unrecorded: float | None = None
    newest_seen = start
    for guid, item in sorted(newest_by_guid.items(), key=lambda kv: kv[1].delivered_at):
        when = item.delivered_at.timestamp()
        newest_seen = max(newest_seen, when)
        if deliveries.exists(client, guid):
            continue
        report.missing += 1
        oldest_unrecorded = when if oldest_unrecorded is None else min(oldest_unrecorded, when)
        asked = recovery_state.asked_at(client, guid)
        if asked is not None and now - asked < ASK_AGAIN_AFTER:
            report.skipped_recently_asked += 1
            continue
        # The time asked is compared with our clock (testable); Redis's own expiry only cleans up afterwards.
        recovery_state.mark_asked(client, guid, now, ttl=GITHUB_KEEPS_SECONDS)
        try:
            github.redeliver(item.id)
            report.requested.append(guid)
        except GitHubError as exc:
            recovery_state.unmark_asked(client, guid)  # it was not asked after all: ask on the next run
            report.failed.append(guid)
            log.warning("redelivery request failed", extra={"delivery_id": guid, "error": type(exc).__name__})
        if progress is not None:
            progress(report)
    # Everything before the oldest unrecorded delivery is handled; without one, everything we saw is.
    new_checkpoint = (oldest_unrecorded - 0.001) if oldest_unrecorded is not None else newest_seen
    if since is None:
        recovery_state.set_checkpoint(client, max(new_checkpoint, start))
    report.checkpoint = max(new_checkpoint, start)
    return report
