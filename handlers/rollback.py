"""Rollback enforcement: evaluate triggers after each finished job and on a sweep; open, follow, restore PRs."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from rq import Queue, get_current_job
from rq.job import Job

from config import Policy
from handlers.runtime import PermanentError, Runtime, current, delivery_task
from runnerguard.domain import rules
from runnerguard.domain.pools import DEFAULT_POOL, Pool, pools_for
from runnerguard.domain.rules import Decision
from runnerguard.queue.dispatch import GITHUB_QUEUE, TASK_RETRY
from runnerguard.queue.routing import Router
from runnerguard.services.rollback_prs import RollbackError, Rollbacks
from runnerguard.store import jobstore, keys
from runnerguard.store.deliveries import Delivery

log = logging.getLogger("runnerguard.services.rollback_prs")
router = Router()
ROLLBACK_PREFIXES = ("runnerguard/rollback/", "runnerguard/restore/")


def pools_of(policy: Policy) -> list[Pool]:
    return list(policy.pools) or [DEFAULT_POOL]


def rollbacks(rt: Runtime) -> Rollbacks:
    return Rollbacks(redis=rt.redis, github=rt.github(), cooldown_seconds=rt.policy.rollback.cooldown_seconds,
                     dry_run=rt.policy.rollback.dry_run, clock=rt.clock)


def failure_rate_decision(rt: Runtime, pool: Pool) -> Decision:
    rule = rt.policy.failure_rate_for(pool.name)
    finished, failed = jobstore.window_counts(rt.redis, pool.name, rt.clock() - rule.window_seconds)
    return rules.failure_rate(pool.name, finished=finished, failed=failed, window_seconds=rule.window_seconds,
                              threshold=rule.threshold, min_jobs=rule.min_jobs)


def stuck_queue_decision(rt: Runtime, pool: Pool) -> Decision:
    rule = rt.policy.rollback.stuck_queue
    since = rt.clock() - rule.after_seconds
    waiting = int(rt.redis.zcount(keys.pool_waiting(pool.name), "-inf", since))  # type: ignore[arg-type]
    started = int(rt.redis.zcount(keys.pool_started(pool.name), since, "+inf"))  # type: ignore[arg-type]
    return rules.stuck_queue(pool.name, waiting_longer=waiting, started_recently=started,
                             after_seconds=rule.after_seconds, min_jobs=rule.min_jobs)


def repos_in_window(rt: Runtime, pool: Pool, decision: Decision) -> list[str]:
    """Repositories that ran jobs of the pool in the window (by completed_at), or that have jobs stuck waiting."""
    since = rt.clock() - (decision.window_seconds or 86400)
    repos = {m.decode() for m in rt.redis.zrangebyscore(keys.pool_repos(pool.name), since, "+inf")}  # type: ignore[union-attr]
    if decision.trigger == rules.STUCK_QUEUE:
        waiting = rt.redis.zrangebyscore(keys.pool_waiting(pool.name), "-inf", since, start=0, num=200)
        repos |= {r["repo"] for r in jobstore.load(rt.redis, (m.decode() for m in waiting))}  # type: ignore[union-attr]
    return sorted(repos)


def request_rollback(rt: Runtime, pool: Pool, repo: str, decision: Decision) -> bool:
    """Queue the GitHub work for one pool and repo, once: a rollback already queued is not queued again."""
    job_id = "rollback_" + "".join(c if c.isalnum() or c in "_-" else "-" for c in f"{pool.name}_{repo}")
    existing = Job.exists(job_id, connection=rt.redis)
    if existing and Job.fetch(job_id, connection=rt.redis).get_status() in ("queued", "started", "scheduled"):
        return False
    Queue(GITHUB_QUEUE, connection=rt.redis).enqueue(
        open_rollback, pool.name, repo, json.dumps(decision.as_dict()), job_id=job_id, result_ttl=0,
        failure_ttl=14 * 86400, job_timeout=600, retry=TASK_RETRY,
    )
    return True


def evaluate_pool(rt: Runtime, pool: Pool, decision: Decision) -> list[str]:
    if not decision.fire:
        return []
    queued = [repo for repo in repos_in_window(rt, pool, decision) if request_rollback(rt, pool, repo, decision)]
    if queued:
        log.info("rollback triggered", extra={"pool": pool.name, "status": decision.reason})
    return queued


@router.register("workflow_job", "completed", name="rollback", queue="events", wrap=delivery_task)
def evaluate_after_job(delivery: Delivery, rt: Runtime) -> None:
    """Two ZCOUNTs per pool of the job: O(log n) whatever the history holds."""
    payload = delivery.payload()
    labels = (payload.get("workflow_job") or {}).get("labels") or []
    if not isinstance(labels, list):
        raise PermanentError("workflow_job.labels must be a list")
    names = set(pools_for([str(label) for label in labels], rt.policy.pools))
    for pool in pools_of(rt.policy):
        if pool.name in names:
            evaluate_pool(rt, pool, failure_rate_decision(rt, pool))


@router.register("pull_request", "closed", name="rollback-pr", queue="events", wrap=delivery_task)
def follow_pull_request(delivery: Delivery, rt: Runtime) -> None:
    payload = delivery.payload()
    pull = payload.get("pull_request") or {}
    head = (pull.get("head") or {}).get("ref") or ""
    repo = (payload.get("repository") or {}).get("full_name")
    if not isinstance(head, str) or not head.startswith(ROLLBACK_PREFIXES) or not isinstance(repo, str):
        return  # not one of ours
    pool_name = head.split("/", 2)[2]
    rollbacks(rt).pull_closed(pool_name, repo, head_ref=head, merged=bool(pull.get("merged")))


def _pool(rt: Runtime, name: str) -> Pool:
    pool = next((p for p in pools_of(rt.policy) if p.name == name), None)
    if pool is None:
        raise PermanentError(f"no pool named {name!r} in the policy")
    return pool


def open_rollback(pool_name: str, repo: str, decision_json: str) -> None:
    """RQ task on the github queue: the PR itself (GitHub calls, rate limited, retried on 5xx)."""
    rt = current()
    data: Mapping[str, Any] = json.loads(decision_json)
    decision = Decision(**{k: v for k, v in data.items() if k != "rate"})
    pool = _pool(rt, pool_name)
    if decision.trigger == rules.FAILURE_RATE:
        # The PR states the cause as it stands when it opens, which may be a few deliveries after it first fired.
        fresh = failure_rate_decision(rt, pool)
        decision = fresh if fresh.fire else decision
    try:
        rollbacks(rt).open(pool, repo, decision)
    except (RollbackError, PermanentError) as exc:
        log.warning("rollback failed for good", extra={"pool": pool_name, "repo": repo, "error": str(exc)})
        job = get_current_job()
        if job is not None:
            job.retries_left = 0
        raise


def restore_rollback(pool_name: str, repo: str) -> None:
    rt = current()
    try:
        rollbacks(rt).restore(_pool(rt, pool_name), repo)
    except (RollbackError, PermanentError):
        job = get_current_job()
        if job is not None:
            job.retries_left = 0
        raise


def manual_rollback(rt: Runtime, pool_name: str, repo: str | None, note: str = "") -> list[str]:
    """An admin asks for a rollback of a pool (in one repo, or every repo that ran its jobs lately)."""
    pool = _pool(rt, pool_name)
    decision = rules.manual(pool.name, note=note)
    repos = [repo] if repo else repos_in_window(rt, pool, Decision(**{**decision.__dict__, "window_seconds": 86400}))
    return [r for r in repos if request_rollback(rt, pool, r, decision)]


def sweep() -> dict[str, Any]:
    """Periodic (worker.py --scheduler): stuck queues, failure rates, and the state of open PRs."""
    rt = current()
    triggered: dict[str, list[str]] = {}
    for pool in pools_of(rt.policy):
        for decision in (stuck_queue_decision(rt, pool), failure_rate_decision(rt, pool)):
            queued = evaluate_pool(rt, pool, decision)
            if queued:
                triggered.setdefault(pool.name, []).extend(queued)
    changed = rollbacks(rt).check_open_pulls() if rt.github() is not None else []
    return {"triggered": triggered, "changed": [f"{s.pool}/{s.repo}: {s.state}" for s in changed]}


def manual_rollback_task(pool_name: str, repo: str | None, note: str) -> list[str]:
    """RQ task behind `POST /api/rollbacks` and `flask --app app rollback open`."""
    return manual_rollback(current(), pool_name, repo, note)
