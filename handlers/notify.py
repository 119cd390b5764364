"""Notification task bodies: fan a notice out to the notifiers, deliver it to one, and `notify test`'s worker half."""

from __future__ import annotations

from collections.abc import Callable

import redis

from config import Policy
from config.notify_env import NotifyConfig
from runnerguard.github import GitHubApp
from runnerguard.services import notify_delivery


def fan_out(entry_id: str, *, redis: redis.Redis, policy: Policy) -> list[str]:
    return notify_delivery.fan_out(redis, policy, entry_id)


def send(entry_id: str, notifier: str, *, redis: redis.Redis, notify: NotifyConfig, github: GitHubApp | None,
         clock: Callable[[], float]) -> str:
    return notify_delivery.deliver(redis, notify, github, entry_id, notifier, now=clock())


def send_test(notifier: str, *, notify: NotifyConfig, github: GitHubApp | None, clock: Callable[[], float]) -> str:
    return notify_delivery.send_test(notify, github, notifier, now=clock())
