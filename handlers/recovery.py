"""The periodic recovery task: get GitHub to redeliver what it failed to deliver while runnerguard was down."""

from __future__ import annotations

import logging

from handlers.runtime import PermanentError, current
from runnerguard.services.recovery import recover

log = logging.getLogger("runnerguard.services.recovery")


def recover_deliveries(since: float | None = None) -> dict[str, object]:
    """RQ task (worker.py --scheduler runs it every few minutes on the github queue)."""
    rt = current()
    github = rt.github()
    if github is None:
        raise PermanentError("the GitHub App is not configured (GITHUB_APP_ID and GITHUB_PRIVATE_KEY_PATH)")
    report = recover(rt.redis, github, since=since, clock=rt.clock)
    if report.requested or report.failed:
        log.info("recovery asked for redeliveries", extra={"status": report.as_dict()})
    return report.as_dict()
