"""Pre-warm caches on the runner host the moment a job is queued (best effort: never blocks or fails a job)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from config import Policy
from handlers.runtime import Runtime, delivery_task
from runnerguard.domain.pools import pools_for
from runnerguard.prewarm import CacheSpec, CommandSpec, SpecError, run_command, safe_repo, warm_cache
from runnerguard.queue.routing import Router
from runnerguard.store.deliveries import Delivery

log = logging.getLogger("runnerguard.prewarm")
router = Router()
QUEUE_PREFIX = "prewarm."


def _job_facts(payload: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """Labels and repository from a payload, strictly validated: both come from outside (fork PRs included)."""
    job = payload.get("workflow_job")
    labels = job.get("labels") if isinstance(job, Mapping) else None
    labels = [label for label in labels if isinstance(label, str)] if isinstance(labels, list) else []
    repo_data = payload.get("repository")
    repo = repo_data.get("full_name") if isinstance(repo_data, Mapping) else None
    try:
        return labels, safe_repo(repo) if isinstance(repo, str) else None
    except SpecError:
        return labels, None  # a repo name we would not trust near a path: only repo-agnostic specs apply


def specs_for(policy: Policy, pools: list[str], repo: str | None) -> tuple[list[CacheSpec], list[CommandSpec]]:
    caches = [c for c in policy.caches if any(c.serves(pool, repo) for pool in pools)]
    commands = [c for c in policy.commands if any(c.serves(pool, repo) for pool in pools)]
    return caches, commands


def prewarm_queues(payload: Mapping[str, Any], policy: Policy) -> list[str]:
    """The queue of each host that serves a pool this job could run on, when that host has something to warm."""
    labels, repo = _job_facts(payload)
    pools = pools_for(labels, policy.pools)
    queues = []
    for pool in policy.pools:
        if pool.name not in pools:
            continue
        caches, commands = specs_for(policy, [pool.name], repo)
        if caches or commands:
            queues += [QUEUE_PREFIX + host for host in pool.hosts if QUEUE_PREFIX + host not in queues]
    return queues


@router.register("workflow_job", "queued", name="prewarm", queue=prewarm_queues, wrap=delivery_task)
def prewarm(delivery: Delivery, rt: Runtime) -> None:
    """Runs on the runner host (worker.py --prewarm): warm what the job's pools need, here."""
    labels, repo = _job_facts(delivery.payload())
    host = rt.settings.host
    pools = [p.name for p in rt.policy.pools if host in p.hosts and p.name in pools_for(labels, rt.policy.pools)]
    caches, commands = specs_for(rt.policy, pools, repo)
    for spec in caches:
        result = warm_cache(spec, redis=rt.redis, host=host, clock=rt.clock)
        log.info("prewarm %s: %s", spec.name, result.result,
                 extra={"delivery_id": delivery.guid, "status": result.result, "error": result.error})
    for command in commands:
        outcome = run_command(command, redis=rt.redis, host=host)
        log.info("prewarm command %s: %s", command.name, outcome.result,
                 extra={"delivery_id": delivery.guid, "status": outcome.result, "error": outcome.error})
