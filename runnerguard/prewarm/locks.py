"""One warm-up per cache at a time on a runner host: an flock on a file in the cache's own temp directory."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

POLL_SECONDS = 0.05


@contextlib.contextmanager
def file_lock(path: Path, *, wait: float = 0.0) -> Iterator[bool]:
    """Hold an exclusive flock on `path` (created if needed); yields False if it stayed busy for `wait` seconds.

    flock rather than a lock file that exists or not: the kernel drops it when the holder dies, so a killed agent
    never leaves the cache locked. Separate opens conflict even within one process, so threads are covered too.
    The host agent is the only writer of its cache roots, so this lock is all a warm-up needs (no central store).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_NOFOLLOW: a job that can write beside the lock must not make us open (and create) a file elsewhere
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
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
