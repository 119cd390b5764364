"""The prewarm lock (an flock on the host), and concurrent prewarms downloading once."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runnerguard.prewarm import locks, warm_cache
from runnerguard.prewarm.specs import CacheSpec
from runnerguard.prewarm.warm import PrewarmResult
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


def _race(spec: CacheSpec, lock_wait: float, server: LoopbackServer) -> list[PrewarmResult]:
    """Start one prewarm, and a second one for the same cache while the first is mid-download."""
    results: list[PrewarmResult] = []

    def warm() -> None:
        results.append(warm_cache(spec, host=HOST, lock_wait=lock_wait))

    first = threading.Thread(target=warm)
    first.start()
    assert server.body_started.wait(5)
    second = threading.Thread(target=warm)
    second.start()
    first.join(20)
    second.join(20)
    return results


def test_two_concurrent_prewarms_download_once_and_both_end_with_the_artifact(
    server: LoopbackServer, tmp_path: Path
) -> None:
    blob = tmp_path / "model.bin"
    blob.write_bytes(os.urandom(640_000))
    spec = cache_spec(tmp_path / "cache", server.add(blob), blob, unpack="none", ttl_seconds=0)
    server.throttle = 0.05  # ~0.5 s of download: the second prewarm surely arrives mid-way

    results = _race(spec, 10.0, server)

    assert sorted(r.result for r in results) == ["hit", "miss"]
    assert len(server.gets()) == 1
    assert sha256_file(spec.dest / "model.bin") == spec.sha256


def test_concurrent_prewarm_without_waiting_is_skipped_not_blocked(
    server: LoopbackServer, tmp_path: Path
) -> None:
    blob = tmp_path / "model.bin"
    blob.write_bytes(os.urandom(640_000))
    spec = cache_spec(tmp_path / "cache", server.add(blob), blob, unpack="none")
    server.throttle = 0.05

    results = _race(spec, 0.0, server)

    assert sorted(r.result for r in results) == ["miss", "skipped"]
    assert len(server.gets()) == 1


def test_a_lock_file_replaced_by_a_symlink_is_refused_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "model.lock").symlink_to(outside)  # a job that can write the cache root plants this
    with pytest.raises(OSError), locks.file_lock(tmp_path / "tmp" / "model.lock"):
        pass
    assert outside.read_text() == "keep"
