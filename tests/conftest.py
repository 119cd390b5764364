"""Fixtures shared by the whole suite: a real redis-server, settings, the app, the shared fixtures folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from config import Policy, Settings, load_settings
from devtools.redis_server import RedisServer, start_redis
from runnerguard.queue.deps import Deps
from runnerguard.queue.worker import RunnerguardWorker, build_worker
from runnerguard.services.rollback import RollbackService
from tests.github_fixtures import *  # noqa: F403
from tests.helpers import ADMIN, SECRET
from tests.notify_receivers import *  # noqa: F403

SHARED = Path(os.environ.get("RUNNERGUARD_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the test session (per xdist worker), on a free port; never a user's Redis."""
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture()
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A clean database for each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared`, beside the clone; tests that need it skip with a reason where it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared fixtures not found at {SHARED} (CI lays ../shared beside the clone)")
    return SHARED


@pytest.fixture()
def settings(redis_url: str) -> Settings:
    """Settings for one test: a real Redis on a free port, a webhook secret, an admin token."""
    return load_settings({
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "ADMIN_TOKEN": ADMIN,
        "REDIS_URL": redis_url,
        "RUNNERGUARD_HOST": "test-host",
        # The suite's payloads carry fixed timestamps, days old by now: the age limit has tests of its own.
        "RUNNERGUARD_MAX_DELIVERY_AGE_HOURS": "0",
    })


@pytest.fixture()
def app(settings: Settings, redis_client: redis.Redis) -> Flask:
    return create_app(settings)


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class Drain:
    """Run every queued task in-process with RQ's SimpleWorker (burst), as worker.py does; `deps` is what the last
    run gave the tasks (its GitHub App, its policy), for tests that call a service directly afterwards."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings = settings
        self.client = client
        self.deps = Deps.from_settings(settings, client=client)

    def __call__(self, queues: tuple[str, ...] = ("events", "github"), policy: Policy | None = None, *,
                 github: object | None = None, one_queue_at_a_time: bool = False) -> int:
        """Returns how many tasks were waiting. `one_queue_at_a_time` drains each queue fully before the next."""
        self.deps = Deps.from_settings(self.settings, client=self.client)
        if policy is not None:
            self.deps.policy = policy
        if github is not None:
            self.deps.github_app = github  # type: ignore[assignment]
        groups = [[q] for q in queues] if one_queue_at_a_time else [list(queues)]
        waiting = 0
        for group in groups:
            worker = build_worker(self.client, group, self.deps, worker_class=BurstWorker)
            waiting += sum(q.count for q in worker.queues)
            worker.work(burst=True, logging_level="WARNING")
        return waiting

    def rollbacks(self) -> RollbackService:
        """The rollback service as the last run's tasks saw it."""
        return RollbackService(redis=self.client, policy=self.deps.policy, github=self.deps.github(),
                               clock=self.deps.clock)


class BurstWorker(RunnerguardWorker):
    def subscribe(self) -> None:
        """No command channel for a burst run: joining its thread costs a second at every teardown."""


@pytest.fixture()
def drain(settings: Settings, redis_client: redis.Redis) -> Drain:
    return Drain(settings, redis_client)
