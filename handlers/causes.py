"""Failure-cause task body: attribute a finished job, then re-check the failure rate of the pools it moved."""

from __future__ import annotations

from collections.abc import Callable

import redis

from config import Policy, Settings
from runnerguard.github import GitHubApp
from runnerguard.services.attribution import Attribution
from runnerguard.services.rollback import RollbackService
from runnerguard.store.deliveries import Delivery


def attribute_job(delivery: Delivery, *, redis: redis.Redis, settings: Settings, policy: Policy,
                  github: GitHubApp | None, clock: Callable[[], float]) -> None:
    moved = Attribution(redis=redis, policy=policy, github=github, retention_seconds=settings.job_retention_seconds,
                        clock=clock).attribute(delivery.payload())
    # A cause that lands later changes what counts: the trigger is evaluated again (no GitHub call here).
    RollbackService(redis=redis, policy=policy, github=None, clock=clock).after_pools(moved)
