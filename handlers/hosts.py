"""Runner host task bodies: the periodic check that tells people when a host goes down or comes back."""

from __future__ import annotations

from collections.abc import Callable

import redis

from config import Policy
from runnerguard.services import hosts


def check_hosts(*, redis: redis.Redis, policy: Policy, clock: Callable[[], float]) -> dict[str, list[str]]:
    """Periodic (worker.py --scheduler): host down/up Notices on transitions, cleanup Notices."""
    return hosts.check_hosts(redis, policy, now=clock())
