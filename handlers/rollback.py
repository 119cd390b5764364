"""Rollback task bodies: after each finished job, on a sweep, and the GitHub work (open, restore, manual)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from config import Policy
from runnerguard.domain.causes import FAILING
from runnerguard.domain.events import PullRequestEvent
from runnerguard.domain.timeline import PayloadError
from runnerguard.github import GitHubApp
from runnerguard.services.rollback import RollbackService
from runnerguard.store.deliveries import Delivery


def _service(redis: redis.Redis, policy: Policy, github: GitHubApp | None,
             clock: Callable[[], float]) -> RollbackService:
    return RollbackService(redis=redis, policy=policy, github=github, clock=clock)


def evaluate_after_job(delivery: Delivery, *, redis: redis.Redis, policy: Policy,
                       clock: Callable[[], float]) -> None:
    job = delivery.payload().get("workflow_job") or {}
    labels = job.get("labels") or []
    if not isinstance(labels, list):
        raise PayloadError("workflow_job.labels must be a list")
    if job.get("conclusion") in FAILING:
        return  # its cause task evaluates the trigger once the cause is known (handlers/causes.py)
    # No GitHub here: this task only counts and queues; open_rollback does the GitHub work.
    _service(redis, policy, None, clock).after_job(tuple(str(label) for label in labels))


def follow_pull_request(delivery: Delivery, *, redis: redis.Redis, policy: Policy, github: GitHubApp | None,
                        clock: Callable[[], float]) -> None:
    _service(redis, policy, github, clock).pull_closed(PullRequestEvent.parse(delivery.payload()))


def open_rollback(pool_name: str, repo: str, decision_json: str | None = None, *, redis: redis.Redis,
                  policy: Policy, github: GitHubApp | None, clock: Callable[[], float]) -> None:
    """The PR itself (GitHub calls, rate limited, retried on 5xx). `decision_json`: jobs queued before 2026-12."""
    recorded: dict[str, Any] | None = json.loads(decision_json) if decision_json else None
    _service(redis, policy, github, clock).open(pool_name, repo, recorded)


def restore_rollback(pool_name: str, repo: str, *, redis: redis.Redis, policy: Policy, github: GitHubApp | None,
                     clock: Callable[[], float]) -> None:
    _service(redis, policy, github, clock).restore(pool_name, repo)


def manual_rollback_task(pool_name: str, repo: str | None, note: str, *, redis: redis.Redis, policy: Policy,
                         clock: Callable[[], float]) -> list[str]:
    """Behind `POST /api/rollbacks` and `flask --app app rollback open`."""
    return _service(redis, policy, None, clock).manual(pool_name, repo, note)


def sweep(*, redis: redis.Redis, policy: Policy, github: GitHubApp | None,
          clock: Callable[[], float]) -> dict[str, Any]:
    """Periodic (worker.py --scheduler): stuck queues, failure rates, and the state of open PRs."""
    return _service(redis, policy, github, clock).sweep()
