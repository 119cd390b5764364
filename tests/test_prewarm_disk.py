"""Disk guards: a download that would fill the cache filesystem is refused; LRU artifacts are evicted over quota."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runnerguard.prewarm import warm_cache
from runnerguard.prewarm.disk import lock_path
from runnerguard.prewarm.locks import file_lock
from runnerguard.prewarm.stamp import MANIFEST_FILE, TMP_DIR
from tests.test_prewarm_server import LoopbackServer, cache_spec

HOST = "laptop-extra"
GB = 1 << 30


@pytest.fixture()
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


def disk_at(used_fraction: float, total: int = 100 * GB) -> Callable[[object], tuple[int, int, int]]:
    """A disk_usage stand-in, (total, used, free) like shutil's: a nearly full disk without filling one."""
    used = int(total * used_fraction)
    return lambda _path: (total, used, total - used)


def blob(tmp_path: Path, name: str, size: int = 100_000) -> Path:
    path = tmp_path / "src" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def test_download_that_would_pass_the_fill_level_is_refused_before_any_request(
    server: LoopbackServer, tmp_path: Path
) -> None:
    src = blob(tmp_path, "model.bin")
    spec = cache_spec(tmp_path / "cache", server.add(src), src, unpack="none", size=2 * GB)

    result = warm_cache(spec, host=HOST, disk_usage=disk_at(0.79))

    assert result.result == "error"
    assert "DiskFull" in (result.error or "") and "above the 80% limit" in (result.error or "")
    assert server.gets() == []


def test_unpinned_size_is_checked_from_content_length_before_the_body_is_read(
    server: LoopbackServer, tmp_path: Path
) -> None:
    src = blob(tmp_path, "model.bin", 1_000_000)
    root = tmp_path / "cache"
    spec = cache_spec(root, server.add(src), src, unpack="none")
    nearly_full = disk_at(0.7999, total=100_000_000)  # 1 MB more crosses 80%

    result = warm_cache(spec, host=HOST, disk_usage=nearly_full)

    assert result.result == "error" and "DiskFull" in (result.error or "")
    assert (len(server.gets()), result.bytes) == (1, 0)
    assert [p.name for p in (root / TMP_DIR).iterdir() if not p.name.endswith(".lock")] == []


def test_fill_level_is_configurable_and_room_below_it_installs(
    server: LoopbackServer, tmp_path: Path
) -> None:
    src = blob(tmp_path, "model.bin")
    spec = cache_spec(tmp_path / "cache", server.add(src), src, unpack="none", size=100_000)

    result = warm_cache(spec, host=HOST, disk_usage=disk_at(0.85), max_fill=0.9)

    assert result.result == "miss", result.error


class Clock:
    """A settable clock: last-used times decide eviction order, so the test sets them exactly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_least_recently_used_artifact_is_evicted_over_the_quota(
    server: LoopbackServer, tmp_path: Path
) -> None:
    root, clock = tmp_path / "models", Clock()
    specs = {
        name: cache_spec(root, server.add(src), src, unpack="none", name=name, quota_bytes=250_000, ttl_seconds=0)
        for name in ("a", "b", "c")
        for src in [blob(tmp_path, f"{name}.bin")]
    }
    for name, at in (("a", 1000), ("b", 2000), ("a", 3000)):  # a installed first but used last
        clock.now = at
        warm_cache(specs[name], host=HOST, clock=clock)

    clock.now = 4000
    result = warm_cache(specs["c"], host=HOST, clock=clock)

    assert result.result == "miss", result.error
    assert sorted(p.name for p in root.iterdir() if p.name != TMP_DIR and p.is_dir()) == ["a", "c"]
    assert sorted(json.loads((root / MANIFEST_FILE).read_text())["artifacts"]) == ["a", "c"]
    assert result.evicted == ("b",)  # the agent reports it; the central stats mark it missing


def test_artifact_being_warmed_elsewhere_is_not_evicted(
    server: LoopbackServer, tmp_path: Path
) -> None:
    root, clock = tmp_path / "models", Clock()
    specs = {
        name: cache_spec(root, server.add(src), src, unpack="none", name=name, quota_bytes=250_000)
        for name in ("a", "b", "c")
        for src in [blob(tmp_path, f"{name}.bin")]
    }
    for name in ("a", "b"):
        clock.now += 1000
        warm_cache(specs[name], host=HOST, clock=clock)

    with file_lock(lock_path(root, "a"), wait=0) as held:  # another worker holds a, the older one
        assert held
        result = warm_cache(specs["c"], host=HOST, clock=clock)

    assert result.result == "miss", result.error
    assert (root / "a").exists() and not (root / "b").exists()


def test_artifact_bigger_than_the_quota_is_refused(
    server: LoopbackServer, tmp_path: Path
) -> None:
    src = blob(tmp_path, "big.bin", 300_000)
    spec = cache_spec(tmp_path / "cache", server.add(src), src, unpack="none", quota_bytes=200_000)

    result = warm_cache(spec, host=HOST)

    assert result.result == "error" and "OverQuota" in (result.error or "")
    assert not spec.dest.exists()
