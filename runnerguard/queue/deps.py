"""What tasks run with (settings, policy, Redis, clock, the GitHub App), built once per worker process by worker.py.

Task bodies name what they need as keyword-only parameters (`*, redis, settings, policy, clock, sleep, github,
notify`); the worker passes exactly those. Nothing is read from a process global.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis

from config import Policy, Settings, load_policy
from config.notify_env import NotifyConfig, load_notify
from runnerguard.github import GitHubApp, load_private_key_from
from runnerguard.store import connection

WORKER_SOCKET_TIMEOUT = 30.0
INJECTABLE = frozenset({"redis", "settings", "policy", "clock", "sleep", "github", "deps", "notify"})


@dataclass
class Deps:
    settings: Settings
    policy: Policy
    redis: Redis
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    github_app: GitHubApp | None = None
    notify_config: NotifyConfig | None = None

    def notify(self) -> NotifyConfig:
        """The notifiers with their URLs and secrets (from the environment the policy names), read on first use."""
        if self.notify_config is None or self.notify_config.specs != self.policy.notifiers:
            self.notify_config = load_notify(self.policy.notifiers)  # built for another policy (a test swaps it)
        return self.notify_config

    def github(self) -> GitHubApp | None:
        """The GitHub App client, built on first use; None when no App is configured."""
        if self.github_app is None and self.settings.github_app_id:
            key = load_private_key_from(self.settings.github_private_key_path, self.settings.github_private_key or None)
            self.github_app = GitHubApp(api_url=self.settings.github_api_url, app_id=int(self.settings.github_app_id),
                                        private_key=key, redis=self.redis, clock=self.clock, sleep=self.sleep)
        return self.github_app

    @classmethod
    def from_settings(cls, settings: Settings, *, client: Redis | None = None) -> Deps:
        return cls(
            settings=settings,
            policy=load_policy(settings.policy_path),
            # Longer than the workers' blocking dequeue (20 s), short enough to notice a primary that vanished
            # without closing its sockets (a host cut off).
            redis=client or connection.connect(settings, socket_timeout=WORKER_SOCKET_TIMEOUT),
        )

    def kwargs_for(self, func: Callable[..., Any]) -> dict[str, Any]:
        """The keyword-only dependencies `func` declares, and only those (github is built only when asked for)."""
        values: dict[str, Any] = {}
        for name in _wanted(func):
            values[name] = (self.github() if name == "github" else self if name == "deps"
                            else self.notify() if name == "notify" else getattr(self, name))
        return values


@functools.cache
def _wanted(func: Callable[..., Any]) -> tuple[str, ...]:
    params = inspect.signature(func).parameters.values()
    unknown = [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in INJECTABLE
               and p.default is p.empty]
    if unknown:
        raise TypeError(f"{func.__qualname__} asks for {unknown}, which no worker provides")
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name in INJECTABLE)
