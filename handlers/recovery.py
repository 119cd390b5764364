"""The periodic recovery task: get GitHub to redeliver what it failed to deliver while runnerguard was down."""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from runnerguard.errors import Permanent
from runnerguard.github import GitHubApp
from runnerguard.services.recovery import recover

log = logging.getLogger("runnerguard.recovery")
NOT_CONFIGURED = "the GitHub App is not configured (GITHUB_APP_ID and GITHUB_PRIVATE_KEY_PATH)"


def recover_deliveries(since: float | None = None, *, redis: redis.Redis, github: GitHubApp | None,
                       clock: Callable[[], float]) -> dict[str, object]:
    """worker.py --scheduler queues it every few minutes on the github queue; the CLI queues it with `since`."""
    if github is None:
        raise Permanent(NOT_CONFIGURED)
    report = recover(redis, github, since=since, clock=clock)
    if report.requested or report.failed:
        log.info("recovery asked for redeliveries", extra={"status": report.as_dict()})
    return report.as_dict()
