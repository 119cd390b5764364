"""Periodic upkeep: retention, and the dashboard's stored summaries folded ahead of time."""

from __future__ import annotations

from collections.abc import Callable

import redis

from config import Policy, Settings
from runnerguard.services import reports, retention


def trim(*, redis: redis.Redis, settings: Settings, clock: Callable[[], float]) -> int:
    return retention.trim(redis, settings, now=clock())


def warm_dashboard(*, redis: redis.Redis, policy: Policy, clock: Callable[[], float]) -> int:
    """Fold settled time buckets into the stored summaries (the scheduler runs it), so a person opening the
    dashboard never pays for folding a week of a large history: the render stays warm. No SVG is drawn here."""
    return reports.fold_summaries(redis, policy, now=clock())
