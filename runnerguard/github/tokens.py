"""Installation tokens cached in process memory (never in Redis) and the per-installation write gate."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockError

from runnerguard.github.errors import Unavailable
from runnerguard.github.models import InstallationToken
from runnerguard.store import github_state

REFRESH_MARGIN = 300.0  # a token is replaced 5 minutes before GitHub expires it
WRITE_SPACING = 1.0  # GitHub asks for at least a second between mutating requests


class TokenCache:
    """`get(id, mint)`: the cached token, or a new one from `mint()` when absent, near expiry, or refused.

    Tokens stay in this process's memory, never in Redis: whoever reads Redis must not get write access to every
    installed repository. Each worker process mints its own (GitHub allows many; each lives an hour).
    """

    def __init__(self, *, clock: Callable[[], float], refresh_margin: float = REFRESH_MARGIN):
        self.clock = clock
        self.refresh_margin = refresh_margin
        self._tokens: dict[int, InstallationToken] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "TokenCache()"

    def get(self, installation_id: int, mint: Callable[[], InstallationToken], *, refresh: bool = False) -> str:
        if not refresh:
            with self._lock:
                cached = self._tokens.get(installation_id)
            if cached is not None and cached.expires_at - self.refresh_margin > self.clock():
                return cached.token
        token = mint()
        with self._lock:
            self._tokens[installation_id] = token
        return token.token

    def forget(self, installation_id: int) -> None:
        with self._lock:
            self._tokens.pop(installation_id, None)


class WriteGate:
    """Mutating requests of one installation go out one at a time, across processes, >= 1 s apart."""

    def __init__(
        self,
        *,
        redis: redis.Redis,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        spacing: float = WRITE_SPACING,
        lock_timeout: float = 120.0,
        wait_timeout: float = 300.0,
    ) -> None:
        self.redis = redis
        self.clock = clock
        self.sleep = sleep
        self.spacing = spacing
        self.lock_timeout = lock_timeout
        self.wait_timeout = wait_timeout

    @contextmanager
    def hold(self, installation_id: int) -> Iterator[None]:
        # The lock expires on its own so a crashed worker cannot block an installation for ever.
        lock = github_state.write_lock(self.redis, installation_id, timeout=self.lock_timeout,
                                       blocking_timeout=self.wait_timeout)
        if not lock.acquire():
            raise Unavailable(f"timed out waiting for installation {installation_id}'s GitHub write turn")
        try:
            last = github_state.last_write(self.redis, installation_id)
            if last is not None:
                try:
                    wait = float(last) + self.spacing - self.clock()
                except ValueError:
                    wait = self.spacing  # a damaged stamp: wait the full spacing rather than none
                if wait > 0:
                    self.sleep(wait)
            try:
                yield
            finally:
                ttl = max(int(self.spacing * 10), 10)
                github_state.record_write(self.redis, installation_id, self.clock(), ttl=ttl)
        finally:
            try:
                lock.release()
            except LockError:
                pass  # it expired while we held it; the next writer already has it
