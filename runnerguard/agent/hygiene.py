"""Free disk space on the runner host, oldest first, only where the policy allows, never through a symlink out.

Every path is walked from a root the policy names (the runner's directory, a cache root) one component at a time
with O_NOFOLLOW and `dir_fd`: a symlink a job planted anywhere below the root is never followed (it is removed
itself, as a link, when it sits inside a candidate), and nothing on another filesystem (a bind mount) is entered.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runnerguard.agent.health import DiskUsage, existing
from runnerguard.prewarm.stamp import TMP_DIR, installed

DAY = 86400.0
HYSTERESIS = 0.05  # free to 5 points under cleanup_at, so one cleanup is not followed by another 30 s later
RUNNER_DIRS = ("_temp", "_tool", "_actions")  # under _work: what the runner re-creates or re-downloads on demand
LEFTOVER = re.compile(r"(?:gone|old)-.+")  # what an eviction or a replaced install left in the cache's temp dir
LEFTOVER_MIN_AGE = 3600.0  # an eviction in progress renames then deletes: never race it
WORKSPACE_DEPTH = 3  # _work/<repo>/<repo>/.git: a checkout touches these on every run
MAX_REPORTED = 50  # paths per cleanup in a report (what the web tier keeps; the body stays below 64 KiB)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


@dataclass(frozen=True)
class Candidate:
    root: Path  # from the policy: trusted, may itself be a symlink (e.g. /home -> /var/home)
    rel: tuple[str, ...]  # below the root, each component walked with O_NOFOLLOW
    last_used: float
    kind: str

    @property
    def path(self) -> Path:
        return self.root.joinpath(*self.rel)


@dataclass(frozen=True)
class Cleanup:
    at: float
    freed_bytes: int
    removed: tuple[str, ...]
    dry_run: bool
    errors: tuple[str, ...] = ()

    def as_report(self) -> dict[str, Any]:
        """The report's `cleanups` entry (interfaces.md section 2)."""
        # a job may name a file with a newline or an escape sequence: the report carries text, not raw bytes
        removed = ["".join(ch if ch.isprintable() else "?" for ch in path)[:4096] for path in self.removed]
        return {"at": self.at, "freed_bytes": self.freed_bytes, "removed": removed[:MAX_REPORTED],
                "dry_run": self.dry_run}


def _open_below(root: Path, rel: Sequence[str]) -> int:
    """A directory fd for root/rel[0]/rel[1]...; raises OSError (ELOOP, ENOTDIR) if any component is a symlink."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in rel:
            nxt = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _names(fd: int) -> list[str]:
    with os.scandir(fd) as it:
        return [entry.name for entry in it]


def _used(st: os.stat_result) -> float:
    """When it was last used: a regular file's atime counts (relatime updates it at least daily, so a tool every job
    reads is used even though its mtime is old); a directory's does not, since our own scan lists it."""
    if stat.S_ISREG(st.st_mode):
        return max(st.st_mtime, st.st_atime)
    return st.st_mtime


def _newest(parent_fd: int, name: str, dev: int, depth: int | None) -> float:
    """The latest use of anything in the subtree (no symlink followed, no other filesystem entered)."""
    st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    newest = _used(st)
    if not stat.S_ISDIR(st.st_mode) or st.st_dev != dev or depth == 0:
        return newest
    fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
    try:
        for child in _names(fd):
            with contextlib.suppress(FileNotFoundError):
                newest = max(newest, _newest(fd, child, dev, None if depth is None else depth - 1))
    finally:
        os.close(fd)
    return newest


def _size(parent_fd: int, name: str, dev: int) -> int:
    st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    own = st.st_blocks * 512 if st.st_nlink <= 1 or stat.S_ISDIR(st.st_mode) else 0
    if not stat.S_ISDIR(st.st_mode) or st.st_dev != dev:
        return own
    fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
    try:
        return own + sum(_size(fd, child, dev) for child in _names(fd))
    finally:
        os.close(fd)


def _remove(parent_fd: int, name: str, dev: int) -> int:
    """Delete `name` below `parent_fd`; a symlink is unlinked as a link, a directory emptied through its own fd."""
    st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    own = st.st_blocks * 512 if st.st_nlink <= 1 or stat.S_ISDIR(st.st_mode) else 0
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent_fd)
        return own
    if st.st_dev != dev:
        return 0  # a mount point inside the tree: not ours to empty
    fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
            return 0  # swapped for something else between the stat and the open
        freed = sum(_remove(fd, child, dev) for child in _names(fd))
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)
    return freed + own


def _children(root: Path, rel: tuple[str, ...]) -> tuple[int, int, list[str]] | None:
    try:
        fd = _open_below(root, rel)
    except OSError:
        return None  # absent, or a symlink where a directory should be: nothing to clean there
    return fd, os.fstat(fd).st_dev, _names(fd)


def _scan(root: Path, rel: tuple[str, ...], kind: str, cutoff: float, *, depth: int | None,
          keep: Callable[[str], bool] = lambda name: True) -> list[Candidate]:
    found = _children(root, rel)
    if found is None:
        return []
    fd, dev, names = found
    out: list[Candidate] = []
    try:
        for name in names:
            if not keep(name):
                continue
            try:
                used = _newest(fd, name, dev, depth)
            except OSError:
                continue
            if used < cutoff:
                out.append(Candidate(root, (*rel, name), used, kind))
    finally:
        os.close(fd)
    return out


def candidates(runner_dir: Path, keep_days: int, cache_roots: Iterable[Path], declared: set[str], *,
               now: float) -> list[Candidate]:
    """What may go, oldest first: runner temp/tool/action dirs and workspaces unused for `keep_days`, and the
    agent's own leftovers (evicted artifacts, artifacts no longer in the policy)."""
    cutoff = now - keep_days * DAY
    found: list[Candidate] = []
    for sub in RUNNER_DIRS:
        found += _scan(runner_dir, ("_work", sub), sub, cutoff, depth=None)
    # workspaces: _work/<repo> for every repository; the runner's own bookkeeping starts with "_"
    found += _scan(runner_dir, ("_work",), "workspace", cutoff, depth=WORKSPACE_DEPTH,
                   keep=lambda name: not name.startswith("_"))
    for root in cache_roots:
        found += _scan(root, (TMP_DIR,), "evicted", now - LEFTOVER_MIN_AGE, depth=None,
                       keep=lambda name: LEFTOVER.fullmatch(name) is not None)
        for directory, st in installed(root):
            if st.name not in declared and max(st.last_used, st.installed_at) < cutoff:
                found.append(Candidate(root, (directory.name,), max(st.last_used, st.installed_at), "undeclared"))
    return sorted(found, key=lambda c: c.last_used)


def _delete(candidate: Candidate) -> int:
    fd = _open_below(candidate.root, candidate.rel[:-1])
    try:
        return _remove(fd, candidate.rel[-1], os.fstat(fd).st_dev)
    finally:
        os.close(fd)


def _measure(candidate: Candidate) -> int:
    fd = _open_below(candidate.root, candidate.rel[:-1])
    try:
        return _size(fd, candidate.rel[-1], os.fstat(fd).st_dev)
    finally:
        os.close(fd)


def clean(runner_dir: Path, *, cleanup_at: float, keep_days: int, dry_run: bool, cache_roots: Iterable[Path],
          declared: set[str], is_busy: Callable[[], bool], now: float,
          disk_usage: DiskUsage) -> Cleanup | None:
    """One pass: None unless the work directory's filesystem is past `cleanup_at`, the runner idle, and something
    could go. Stops as soon as a job starts (checked before every removal)."""
    work = existing(runner_dir / "_work")
    usage = disk_usage(work)
    total, used = int(usage[0]), int(usage[1])
    if total <= 0 or used / total < cleanup_at or is_busy():
        return None
    need = used - int(total * max(cleanup_at - HYSTERESIS, 0.0))
    freed, removed, errors = 0, [], []
    for candidate in candidates(runner_dir, keep_days, cache_roots, declared, now=now):
        if freed >= need:
            break
        try:
            if dry_run:
                freed += _measure(candidate)
            else:
                if is_busy():
                    break
                freed += _delete(candidate)
        except OSError as exc:
            errors.append(f"{candidate.path}: {exc.strerror or exc.__class__.__name__}")
            continue
        removed.append(str(candidate.path))
    if not removed:
        return None
    return Cleanup(now, freed, tuple(removed), dry_run, tuple(errors))
