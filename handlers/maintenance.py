"""Periodic upkeep: retention, and the dashboard's stored summaries folded ahead of time."""

from __future__ import annotations

from collections.abc import Callable

import redis

from config import Policy, Settings
from runnerguard.queue.dispatch import Dispatcher
from runnerguard.queue.routing import Router
from runnerguard.services import lost_tasks, reports, retention


def trim(*, redis: redis.Redis, settings: Settings, clock: Callable[[], float]) -> int:
    return retention.trim(redis, settings, now=clock())


def warm_dashboard(*, redis: redis.Redis, policy: Policy, clock: Callable[[], float]) -> int:
    """Fold settled time buckets into the stored summaries (the scheduler runs it), so a person opening the
    dashboard never pays for folding a week of a large history: the render stays warm. No SVG is drawn here."""
    return reports.fold_summaries(redis, policy, now=clock())


def requeue_lost(*, redis: redis.Redis, settings: Settings, policy: Policy, clock: Callable[[], float]) -> list[str]:
    """Deliveries whose task no RQ job will run any more, those tasks queued again (the scheduler runs it)."""
    return lost_tasks.requeue_lost(redis, Dispatcher(redis, Router(), policy), now=clock(),
                                   grace=settings.lost_task_grace_seconds)
