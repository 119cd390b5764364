"""What tasks run with (settings, policy, Redis, clock), built once per worker process, and the task wrapper."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from rq import get_current_job

from config import Policy, Settings, load_policy, load_settings
from runnerguard.domain.timeline import PayloadError
from runnerguard.github import GitHubApp, load_private_key_from
from runnerguard.store import deliveries
from runnerguard.store.deliveries import Delivery

log = logging.getLogger("runnerguard.tasks")


class PermanentError(Exception):
    """Retrying cannot help (the payload lacks what the task needs): fail now, record why."""


@dataclass
class Runtime:
    settings: Settings
    policy: Policy
    redis: redis.Redis
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    github_app: GitHubApp | None = None

    def github(self) -> GitHubApp | None:
        """The GitHub App client, built on first use; None when no App is configured."""
        if self.github_app is None and self.settings.github_app_id:
            key = load_private_key_from(self.settings.github_private_key_path, self.settings.github_private_key or None)
            self.github_app = GitHubApp(api_url=self.settings.github_api_url, app_id=int(self.settings.github_app_id),
                                        private_key=key, redis=self.redis, clock=self.clock, sleep=self.sleep)
        return self.github_app

    @classmethod
    def from_settings(cls, settings: Settings, *, client: redis.Redis | None = None) -> Runtime:
        return cls(
            settings=settings,
            policy=load_policy(settings.policy_path),
            redis=client or redis.Redis.from_url(settings.redis_url, health_check_interval=30),
        )


_runtime: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    """worker.py (or a test) sets the runtime; tasks use it."""
    global _runtime  # noqa: PLW0603 - one runtime per worker process, set at start
    _runtime = runtime


def current() -> Runtime:
    """The installed runtime; a plain `rq worker` gets one built from the environment on first use."""
    global _runtime  # noqa: PLW0603
    if _runtime is None:
        _runtime = Runtime.from_settings(load_settings())
    return _runtime


# A task body returns True when it recorded its own "done" (in the same write as its work), else None.
DeliveryTask = Callable[[Delivery, "Runtime"], bool | None]


def delivery_task(name: str, body: DeliveryTask) -> Callable[[str], None]:
    """Wrap a task body: load the delivery by id, run it, record done / failed on the delivery."""

    def task(guid: str) -> None:
        rt = current()
        delivery = deliveries.load(rt.redis, guid)
        extra = {"delivery_id": guid, "task": name}
        if delivery is None:
            # Past retention, or never recorded: nothing to do, and retrying will not bring it back.
            log.warning("delivery not found", extra=extra)
            return
        extra.update(event=delivery.event, action=delivery.action, repo=delivery.repo)
        try:
            marked = body(delivery, rt)
        except (PayloadError, PermanentError, ValueError) as exc:
            deliveries.mark_task(rt.redis, guid, name, deliveries.FAILED, error=str(exc), now=rt.clock())
            log.warning("task failed for good", extra={**extra, "error": str(exc)[:200]})
            job = get_current_job()
            if job is not None:
                job.retries_left = 0  # a permanent error: straight to the failed registry, no retry
            raise
        except Exception as exc:
            # Transient (Redis, network, GitHub): RQ retries with backoff; the last failure stays recorded.
            deliveries.mark_task(rt.redis, guid, name, deliveries.FAILED, error=f"{type(exc).__name__}: {exc}",
                                 now=rt.clock())
            log.warning("task failed", extra={**extra, "error": type(exc).__name__})
            raise
        if not marked:
            deliveries.mark_task(rt.redis, guid, name, deliveries.DONE, now=rt.clock())
        log.info("task done", extra=extra)

    return task
