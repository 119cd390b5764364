"""One warm-up per cache at a time: a Redis lock across workers plus an flock on the host's cache directory."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from redis.exceptions import LockError

# long enough for a slow chunk; a live download renews it (see Lease.renew), a dead worker's lock just expires
REDIS_LOCK_SECONDS = 120.0
RENEW_EVERY_SECONDS = 15.0
POLL_SECONDS = 0.05


@contextlib.contextmanager
def file_lock(path: Path, *, wait: float = 0.0) -> Iterator[bool]:
    """Hold an exclusive flock on `path` (created if needed); yields False if it stayed busy for `wait` seconds.

    flock rather than a lock file that exists or not: the kernel drops it when the holder dies, so a killed worker
    never leaves the cache locked. Separate opens conflict even within one process, so threads are covered too.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(POLL_SECONDS)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class Lease:
    """A held Redis lock; `renew()` is cheap to call often and only talks to Redis every RENEW_EVERY_SECONDS."""

    def __init__(self, lock: redis.lock.Lock) -> None:
        self._lock = lock
        self._renewed = time.monotonic()
        self.lost = False

    def renew(self) -> None:
        if self.lost or time.monotonic() - self._renewed < RENEW_EVERY_SECONDS:
            return
        try:
            self._lock.reacquire()
            self._renewed = time.monotonic()
        except LockError:
            # another worker may now start the same download; the host flock still keeps this host consistent
            self.lost = True


@contextlib.contextmanager
def held(client: redis.Redis, key: str, file_path: Path, *, wait: float = 0.0) -> Iterator[Lease | None]:
    """Both locks, or None when either stayed busy for `wait` seconds (Redis first: it is the cheap question)."""
    deadline = time.monotonic() + wait
    lock = client.lock(key, timeout=REDIS_LOCK_SECONDS, sleep=POLL_SECONDS, blocking=wait > 0,
                       blocking_timeout=wait if wait > 0 else None)
    if not lock.acquire():
        yield None
        return
    try:
        with file_lock(file_path, wait=max(0.0, deadline - time.monotonic())) as got:
            yield Lease(lock) if got else None
    finally:
        with contextlib.suppress(LockError):
            lock.release()
