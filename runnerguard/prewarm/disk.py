"""Disk guards: refuse a download that would fill the cache filesystem, evict least-recently-used artifacts."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runnerguard.errors import RunnerguardError
from runnerguard.prewarm.locks import file_lock
from runnerguard.prewarm.stamp import TMP_DIR, installed

DiskUsage = Callable[[Any], Any]  # shutil.disk_usage's shape: (total, used, free) by index


class DiskFull(RunnerguardError):
    """Starting this download would leave the cache filesystem above the configured fill level."""


class OverQuota(RunnerguardError):
    """The artifact cannot fit in its cache's quota even after evicting everything else."""


@dataclass(frozen=True)
class Evicted:
    name: str
    directory: Path
    size: int


def lock_path(root: Path, name: str) -> Path:
    """The host-side lock of one artifact; eviction takes it too, so it never deletes what is being installed."""
    return root / TMP_DIR / f"{name}.lock"


def check_fill(root: Path, need: int, *, max_fill: float, disk_usage: DiskUsage = shutil.disk_usage) -> None:
    """Raise DiskFull if writing `need` more bytes would take the filesystem of `root` above `max_fill` (0-1)."""
    probe = root if root.exists() else next((p for p in root.parents if p.exists()), Path("/"))
    usage = disk_usage(probe)
    total, used = int(usage[0]), int(usage[1])
    if total <= 0:
        return
    after = (used + max(need, 0)) / total
    if after > max_fill:
        raise DiskFull(
            f"cache filesystem at {used / total:.0%}; {need} more bytes would take it to {after:.0%}, "
            f"above the {max_fill:.0%} limit"
        )


def remove_tree(directory: Path, root: Path) -> None:
    """Rename out of sight first (atomic: jobs see the artifact or nothing), then delete at leisure."""
    tmp_dir = root / TMP_DIR
    tmp_dir.mkdir(parents=True, exist_ok=True)
    graveyard = Path(tempfile.mkdtemp(prefix=f"gone-{directory.name}.", dir=tmp_dir))
    directory.rename(graveyard / directory.name)
    shutil.rmtree(graveyard, ignore_errors=True)


def evict_for_quota(root: Path, *, quota: int, incoming: int, keep: str, now: float) -> list[Evicted]:
    """Evict least-recently-used artifacts of `root` until the others plus `incoming` bytes fit in `quota`.

    `keep` (the artifact being warmed) is never a candidate and its old size is not counted: it is being
    replaced by the `incoming` bytes. Artifacts locked by another warm-up are skipped. Raises OverQuota.
    """
    others = [(d, s) for d, s in installed(root) if s.name != keep]
    total = incoming + sum(s.size for _, s in others)
    evicted: list[Evicted] = []
    # a never-used stamp falls back to its install time; ties go to the bigger artifact (frees more at once)
    for directory, stamp in sorted(others, key=lambda ds: (ds[1].last_used or ds[1].installed_at, -ds[1].size)):
        if total <= quota:
            break
        with file_lock(lock_path(root, stamp.name), wait=0.0) as got:
            if not got:
                continue
            with contextlib.suppress(FileNotFoundError):
                remove_tree(directory, root)
        total -= stamp.size
        evicted.append(Evicted(stamp.name, directory, stamp.size))
    if total > quota:
        raise OverQuota(f"needs {total} bytes in {root.name} with everything evictable gone; quota is {quota}")
    return evicted
