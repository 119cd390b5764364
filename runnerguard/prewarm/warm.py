"""Entry points the host agent calls: warm one cache artifact, or run one policy command, best effort."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import unquote, urlsplit

import requests

from runnerguard.errors import RunnerguardError
from runnerguard.prewarm import disk, locks, stamp
from runnerguard.prewarm.commands import CommandResult, run_command
from runnerguard.prewarm.download import Downloaded, DownloadError, discard, download
from runnerguard.prewarm.specs import CacheSpec, SpecError, safe_name
from runnerguard.prewarm.unpack import UnsafeArchive, unpack

log = logging.getLogger(__name__)

__all__ = ["CommandResult", "PrewarmResult", "run_command", "warm_cache"]

Result = Literal["hit", "miss", "error", "skipped"]
DEFAULT_RETRIES = 2
MANIFEST_LOCK_WAIT = 30.0


class ChecksumMismatch(RunnerguardError):
    """The downloaded bytes are not the ones the policy pinned; nothing of them is kept."""


class NotOurs(RunnerguardError):
    """`dest` holds files runnerguard did not install; we do not delete them."""


# expected failures: recorded and returned, never raised (warming is best effort and must not fail a job)
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ChecksumMismatch, NotOurs, disk.DiskFull, disk.OverQuota, UnsafeArchive, DownloadError,
    requests.RequestException, zipfile.BadZipFile, tarfile.TarError, EOFError, OSError,
)


@dataclass(frozen=True)
class PrewarmResult:
    """What one prewarm did; `bytes` crossed the network (also on error), `seconds` is wall time."""

    name: str
    host: str
    result: Result
    bytes: int
    seconds: float
    error: str | None = None
    detail: str = ""  # why: "stamp" / "verified after a stat change" (hit), lock busy (skipped),
    # "missing" / "changed" / "outdated" (miss)
    evicted: tuple[str, ...] = ()  # artifacts of the same root evicted for the quota (the agent reports them)


@dataclass
class _Run:
    """Mutable bookkeeping of one warm-up (bytes survive failed attempts: they were downloaded all the same)."""

    spec: CacheSpec
    host: str
    clock: Callable[[], float]
    disk_usage: disk.DiskUsage
    max_fill: float
    session: requests.Session
    retries: int
    nbytes: int = 0
    evicted: list[str] = field(default_factory=list)

    def count(self, chunk: int) -> None:
        self.nbytes += chunk


def _plain_file_name(spec: CacheSpec) -> str:
    """For unpack 'none': the URL's last path segment when it is a safe name, else the cache's own name."""
    last = PurePosixPath(unquote(urlsplit(spec.url).path)).name
    try:
        return safe_name(last)
    except SpecError:
        return spec.name


def _room_needed(spec: CacheSpec, remaining: int, total: int) -> int:
    # an archive also needs room for its unpacked copy beside the download (about its size; the unpack budget
    # catches archives that grow more); a plain file is only renamed into place
    return remaining + (0 if spec.unpack == "none" else total)


def _evict(run: _Run, incoming: int) -> None:
    quota = run.spec.quota_bytes
    if quota is None:
        return
    for gone in disk.evict_for_quota(run.spec.root, quota=quota, incoming=incoming, keep=run.spec.name,
                                     now=run.clock()):
        log.info("prewarm evicted %s (%d bytes) from %s", gone.name, gone.size, run.spec.root)
        run.evicted.append(gone.name)


def _fetch(run: _Run, part: Path) -> Downloaded:
    spec = run.spec

    def before_body(remaining: int | None, total: int | None) -> None:
        size = spec.size or total or 0
        need = _room_needed(spec, remaining if remaining is not None else size, size)
        disk.check_fill(spec.root, need, max_fill=run.max_fill, disk_usage=run.disk_usage)
        _evict(run, size)

    def progress(chunk: int) -> None:
        run.count(chunk)

    if spec.size is not None:
        # the size is pinned: refuse before opening a connection at all (a resumable .part needs only the rest)
        have = part.stat().st_size if part.exists() else 0
        need = _room_needed(spec, max(spec.size - have, 0), spec.size)
        disk.check_fill(spec.root, need, max_fill=run.max_fill, disk_usage=run.disk_usage)
    attempt = 0
    fresh_retry_used = False
    while True:
        try:
            got = download(spec.url, part, expected_sha256=spec.sha256, expected_size=spec.size, session=run.session,
                           before_body=before_body, progress=progress)
        except (DownloadError, requests.RequestException) as exc:
            retryable = getattr(exc, "retryable", True)
            if not retryable or attempt >= run.retries:
                raise
            attempt += 1
            log.info("prewarm %s: attempt %d failed (%s), resuming", spec.name, attempt, exc)
            time.sleep(min(0.2 * 2**attempt, 2.0))
            continue
        if got.sha256 == spec.sha256:
            return got
        discard(part)
        if got.resumed_from and not fresh_retry_used:
            # a server without validators may have changed the file under our .part: one clean try before blaming it
            fresh_retry_used = True
            continue
        raise ChecksumMismatch(f"checksum mismatch: downloaded sha256 {got.sha256}, the policy pins {spec.sha256}; "
                               f"the download was discarded and nothing installed")


def _swap_into_place(new: Path, dest: Path, root: Path) -> None:
    """Rename the finished tree onto `dest`: a single atomic rename on a cold install.

    Replacing an existing tree takes two renames (rename(2) cannot replace a non-empty directory), so for a moment
    `dest` is absent; jobs then see "not cached" rather than a half-written tree.
    """
    if dest.is_symlink() or dest.exists():
        tmp_dir = root / stamp.TMP_DIR
        graveyard = Path(tempfile.mkdtemp(prefix=f"old-{dest.name}.", dir=tmp_dir))
        dest.rename(graveyard / dest.name)
        os.rename(new, dest)
        shutil.rmtree(graveyard, ignore_errors=True)
    else:
        os.rename(new, dest)


def _room(run: _Run) -> int:
    usage = run.disk_usage(run.spec.root)
    room = int(int(usage[0]) * run.max_fill) - int(usage[1])
    if run.spec.quota_bytes is not None:
        room = min(room, run.spec.quota_bytes)
    return max(room, 0)


def _sweep(spec: CacheSpec) -> None:
    """Remove what a worker killed mid-install left of this cache; safe because we hold its locks."""
    tmp_dir = spec.root / stamp.TMP_DIR
    for pattern in (f"{spec.name}.new-*", f"old-{spec.dest.name}.*", f"gone-{spec.dest.name}.*"):
        for stale in tmp_dir.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def _install(run: _Run) -> None:
    spec = run.spec
    tmp_dir = spec.root / stamp.TMP_DIR
    part = tmp_dir / f"{spec.name}.part"
    _sweep(spec)
    got = _fetch(run, part)
    into = Path(tempfile.mkdtemp(prefix=f"{spec.name}.new-", dir=tmp_dir))
    try:
        # the unpack budget is what the fill limit still allows: a zip bomb stops there instead of filling the disk
        files = unpack(got.path, spec.unpack, into, archive_sha256=spec.sha256, file_name=_plain_file_name(spec),
                       max_bytes=_room(run) + (got.size if spec.unpack == "none" else 0))
        new_stamp = stamp.build_stamp(spec, into, files, now=run.clock())
        stamp.write_stamp(into, new_stamp)  # inside the tree: stamp and files become visible in the same rename
        os.chmod(into, 0o755)  # noqa: S103 -- mkdtemp made it 0700; jobs may run as another user and only read
        _swap_into_place(into, spec.dest, spec.root)
    finally:
        shutil.rmtree(into, ignore_errors=True)
        discard(part)
    _evict(run, new_stamp.size)


def _write_manifests(run: _Run) -> None:
    with locks.file_lock(run.spec.root / stamp.TMP_DIR / "manifest.lock", wait=MANIFEST_LOCK_WAIT) as got:
        if got:
            stamp.write_manifests(run.spec.root, now=run.clock())


def _warm_locked(run: _Run) -> tuple[Result, str]:
    spec = run.spec
    verdict, found = stamp.check(spec)
    if verdict == "changed" and found is not None and stamp.verify(spec, found):
        verdict = "hit"
        detail = "verified after a stat change"
    else:
        detail = "stamp"
    if verdict == "hit" and found is not None:
        found.last_used = run.clock()
        with contextlib.suppress(OSError):  # only the eviction order suffers if the hint cannot be written
            stamp.write_stamp(spec.dest, found)
        if not (spec.root / stamp.CHECKSUMS_FILE).exists():
            _write_manifests(run)
        return "hit", detail
    if verdict == "foreign":
        owner = f"for cache {found.name!r}" if found is not None else "by runnerguard"
        raise NotOurs(f"{spec.dest} exists and was not installed {owner}; remove it or choose another dest")
    if verdict == "changed":
        # a corrupted tree must not be used by the jobs that start while we download a fresh copy
        disk.remove_tree(spec.dest, spec.root)
    try:
        _install(run)
    finally:
        _write_manifests(run)  # also after a failure: an eviction may have changed what is installed
    return "miss", verdict


def warm_cache(
    spec: CacheSpec,
    *,
    host: str,
    clock: Callable[[], float] = time.time,
    disk_usage: disk.DiskUsage = shutil.disk_usage,
    max_fill: float = 0.8,
    session: requests.Session | None = None,
    lock_wait: float = 0.0,
    retries: int = DEFAULT_RETRIES,
) -> PrewarmResult:
    """Make sure `spec`'s artifact is installed on this host and return what happened (the agent reports it).

    `lock_wait` is how long to wait for a warm-up of the same cache already running on this host (0: skip at
    once). Expected failures come back as result 'error'; only a bad `host` (SpecError) raises.
    """
    host = safe_name(host, key="host")
    started = time.monotonic()
    own_session = session is None
    run = _Run(spec, host, clock, disk_usage, max_fill, session or requests.Session(), retries)

    def finish(result: Result, *, detail: str = "", error: str | None = None, nbytes: int = 0) -> PrewarmResult:
        seconds = time.monotonic() - started
        log.info("prewarm %s on %s: %s %s", spec.name, host, result, error or detail,
                 extra={"cache": spec.name, "host": host, "result": result, "bytes": nbytes, "seconds": seconds})
        return PrewarmResult(spec.name, host, result, nbytes, seconds, error, detail, tuple(run.evicted))

    try:
        spec.root.joinpath(stamp.TMP_DIR).mkdir(parents=True, exist_ok=True)
        with locks.file_lock(disk.lock_path(spec.root, spec.name), wait=lock_wait) as got:
            if not got:
                return finish("skipped", detail="another prewarm of this cache holds the lock")
            result, detail = _warm_locked(run)
    except EXPECTED_ERRORS as exc:
        message = str(exc) if isinstance(exc, ChecksumMismatch | NotOurs) else f"{exc.__class__.__name__}: {exc}"
        return finish("error", error=message, nbytes=run.nbytes)
    finally:
        if own_session:
            run.session.close()
    if result == "hit":
        return finish("hit", detail=detail)
    return finish("miss", detail=detail, nbytes=run.nbytes)
