"""Pre-warm caches on the runner host the moment a job is queued (best effort: never blocks or fails a job)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from config import Policy, Settings
from runnerguard.domain.events import WorkflowJobEvent
from runnerguard.domain.pools import pools_for
from runnerguard.domain.timeline import PayloadError
from runnerguard.prewarm import SpecError, run_command, safe_repo, warm_cache
from runnerguard.prewarm.warm import PrewarmResult
from runnerguard.store import prewarm_stats
from runnerguard.store.deliveries import Delivery

log = logging.getLogger("runnerguard.prewarm")


def _job_facts(delivery: Delivery) -> tuple[tuple[str, ...], str | None]:
    """Labels and repository, strictly validated: both come from outside (fork PRs included)."""
    try:
        event = WorkflowJobEvent.parse(delivery.payload())
    except (PayloadError, ValueError):
        return (), None
    try:
        return event.labels, safe_repo(event.repo)
    except SpecError:
        return event.labels, None  # a repo name we would not trust near a path: only repo-agnostic specs apply


def prewarm(delivery: Delivery, *, redis: redis.Redis, settings: Settings, policy: Policy,
            clock: Callable[[], float]) -> None:
    """Runs on the runner host (worker.py --prewarm): warm what the job's pools need, here."""
    labels, repo = _job_facts(delivery)
    host = settings.host
    pools = [p.name for p in policy.pools if host in p.hosts and p.name in pools_for(labels, policy.pools)]
    caches, commands = policy.prewarm_specs_for(pools, repo)
    for spec in caches:
        result = warm_cache(spec, host=host, clock=clock)
        _record(redis, result, spec.sha256, now=clock())
        log.info("prewarm %s: %s", spec.name, result.result,
                 extra={"delivery_id": delivery.guid, "status": result.result, "error": result.error})
    for command in commands:
        outcome = run_command(command, host=host, lock_dir=command.cwd / ".runnerguard-locks")
        log.info("prewarm command %s: %s", command.name, outcome.result,
                 extra={"delivery_id": delivery.guid, "status": outcome.result, "error": outcome.error})


_COUNTERS: dict[str, prewarm_stats.Counter] = {"hit": "hits", "miss": "misses", "error": "errors", "skipped": "skipped"}


def _record(client: redis.Redis, result: PrewarmResult, sha256: str, *, now: float) -> None:
    """The stats this in-process warm used to write itself (the host agent reports through `done` instead)."""
    state: prewarm_stats.State | None = {"hit": "installed", "miss": "installed", "error": "failed"}.get(
        result.result)  # type: ignore[assignment]
    prewarm_stats.record(client, result.name, result.host, counter=_COUNTERS[result.result], state=state,
                         nbytes=result.bytes, seconds=result.seconds,
                         sha256=sha256 if state == "installed" else None, error=result.error, now=now)
    for gone in result.evicted:
        prewarm_stats.set_state(client, gone, result.host, "missing", now=now)
