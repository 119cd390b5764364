"""The two prewarm locks (Redis across workers, flock on the host), and concurrent prewarms downloading once."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from runnerguard.prewarm import cache_rows, locks, warm_cache
from runnerguard.prewarm.specs import CacheSpec
from runnerguard.prewarm.warm import PrewarmResult
from runnerguard.store import keys
from tests.test_prewarm_server import LoopbackServer, cache_spec, sha256_file

HOST = "laptop-extra"


@pytest.fixture()
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


def test_flock_is_exclusive_across_separate_opens_and_released_on_exit(tmp_path: Path) -> None:
    path = tmp_path / "tmp" / "model.lock"
    with locks.file_lock(path) as first:
        with locks.file_lock(path, wait=0.1) as second:
            assert (first, second) == (True, False)
    with locks.file_lock(path) as again:
        assert again


def test_held_yields_none_while_another_worker_holds_the_redis_lock(tmp_path: Path, redis_client: redis.Redis) -> None:
    key = keys.prewarm_lock("model", "laptop")
    other = redis_client.lock(key, timeout=30)
    assert other.acquire(blocking=False)
    with locks.held(redis_client, key, tmp_path / "model.lock", wait=0.2) as lease:
        assert lease is None
    other.release()
    with locks.held(redis_client, key, tmp_path / "model.lock") as lease:
        assert lease is not None
        assert 0 < redis_client.pttl(key) <= locks.REDIS_LOCK_SECONDS * 1000
    assert redis_client.exists(key) == 0


def test_lease_renewal_pushes_the_redis_expiry_back(
    tmp_path: Path, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(locks, "RENEW_EVERY_SECONDS", 0.0)
    key = keys.prewarm_lock("model", "laptop")
    with locks.held(redis_client, key, tmp_path / "model.lock") as lease:
        assert lease is not None
        redis_client.pexpire(key, 500)  # as if most of the lock's time had gone by mid-download
        lease.renew()
        assert redis_client.pttl(key) > 100_000
        assert not lease.lost


def _race(spec: CacheSpec, redis_url: str, lock_wait: float, server: LoopbackServer) -> list[PrewarmResult]:
    """Start one prewarm, and a second one for the same cache while the first is mid-download."""
    results: list[PrewarmResult] = []

    def warm() -> None:
        client = redis.Redis.from_url(redis_url)  # separate connections, as separate workers would have
        results.append(warm_cache(spec, redis=client, host=HOST, lock_wait=lock_wait))
        client.close()

    first = threading.Thread(target=warm)
    first.start()
    assert server.body_started.wait(5)
    second = threading.Thread(target=warm)
    second.start()
    first.join(20)
    second.join(20)
    return results


def test_two_concurrent_prewarms_download_once_and_both_end_with_the_artifact(
    server: LoopbackServer, tmp_path: Path, redis_client: redis.Redis, redis_url: str
) -> None:
    blob = tmp_path / "model.bin"
    blob.write_bytes(os.urandom(640_000))
    spec = cache_spec(tmp_path / "cache", server.add(blob), blob, unpack="none", ttl_seconds=0)
    server.throttle = 0.05  # ~0.5 s of download: the second prewarm surely arrives mid-way

    results = _race(spec, redis_url, 10.0, server)

    assert sorted(r.result for r in results) == ["hit", "miss"]
    assert len(server.gets()) == 1
    assert sha256_file(spec.dest / "model.bin") == spec.sha256


def test_concurrent_prewarm_without_waiting_is_skipped_not_blocked(
    server: LoopbackServer, tmp_path: Path, redis_client: redis.Redis, redis_url: str
) -> None:
    blob = tmp_path / "model.bin"
    blob.write_bytes(os.urandom(640_000))
    spec = cache_spec(tmp_path / "cache", server.add(blob), blob, unpack="none")
    server.throttle = 0.05

    results = _race(spec, redis_url, 0.0, server)

    assert sorted(r.result for r in results) == ["miss", "skipped"]
    assert len(server.gets()) == 1
    [row] = cache_rows(redis_client)
    assert (row["misses"], row["skipped"], row["hits"]) == (1, 1, 0)
