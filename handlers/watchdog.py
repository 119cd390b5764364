"""The watchdog's periodic task bodies (worker.py --scheduler): timeouts, stranded jobs, one more try."""

from __future__ import annotations

from collections.abc import Callable

import redis

from config import Policy, Settings
from runnerguard.github import GitHubApp
from runnerguard.services.watchdog import Watchdog


def _watchdog(redis: redis.Redis, settings: Settings, policy: Policy, github: GitHubApp | None,
              clock: Callable[[], float]) -> Watchdog:
    return Watchdog(redis=redis, policy=policy, github=github, retention_seconds=settings.job_retention_seconds,
                    clock=clock)


def sweep_timeouts(*, redis: redis.Redis, settings: Settings, policy: Policy, github: GitHubApp | None,
                   clock: Callable[[], float]) -> dict[str, object]:
    """Every minute: cancel jobs past their pool's max_run, force-cancel those still running force_after later."""
    return _watchdog(redis, settings, policy, github, clock).sweep_timeouts().as_dict()


def find_stranded(*, redis: redis.Redis, settings: Settings, policy: Policy, github: GitHubApp | None,
                  clock: Callable[[], float]) -> dict[str, object]:
    """Ask GitHub about jobs not seen complete for too long; record the ends no webhook brought."""
    return _watchdog(redis, settings, policy, github, clock).find_stranded().as_dict()


def rerun_runner_failures(*, redis: redis.Redis, settings: Settings, policy: Policy, github: GitHubApp | None,
                          clock: Callable[[], float]) -> dict[str, object]:
    """Re-run once each recent first attempt the runner lost, where its pools are healthy."""
    return _watchdog(redis, settings, policy, github, clock).rerun_runner_failures().as_dict()
