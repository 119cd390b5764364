"""Fixtures shared by the whole suite: a real redis-server, settings, the app, the shared fixtures folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devtools.redis_server import RedisServer, start_redis

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
