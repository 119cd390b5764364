"""Installation tokens cached in Redis (shared by every worker) and the per-installation write gate."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockError

from runnerguard.github.errors import Unavailable
from runnerguard.github.models import InstallationToken
from runnerguard.store import keys

REFRESH_MARGIN = 300.0  # a token is replaced 5 minutes before GitHub expires it
WRITE_SPACING = 1.0  # GitHub asks for at least a second between mutating requests


class TokenCache:
    """`get(id, mint)`: the cached token, or a new one from `mint()` when absent, near expiry, or refused."""

    def __init__(self, *, redis: redis.Redis, clock: Callable[[], float], refresh_margin: float = REFRESH_MARGIN):
        self.redis = redis
        self.clock = clock
        self.refresh_margin = refresh_margin

    def __repr__(self) -> str:
        return "TokenCache()"

    def get(self, installation_id: int, mint: Callable[[], InstallationToken], *, refresh: bool = False) -> str:
        key = keys.installation_token(installation_id)
        if not refresh:
            cached = self._read(key)
            if cached is not None and cached.expires_at - self.refresh_margin > self.clock():
                return cached.token
        token = mint()
        ttl = int(token.expires_at - self.refresh_margin - self.clock())
        if ttl > 0:
            self.redis.set(key, json.dumps({"token": token.token, "expires_at": token.expires_at}), ex=ttl)
        return token.token

    def forget(self, installation_id: int) -> None:
        self.redis.delete(keys.installation_token(installation_id))

    def _read(self, key: str) -> InstallationToken | None:
        raw = self.redis.get(key)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return InstallationToken(token=str(data["token"]), expires_at=float(data["expires_at"]))
        except (ValueError, KeyError, TypeError):
            return None  # a damaged entry is simply replaced


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
        lock = self.redis.lock(
            keys.github_write_lock(installation_id), timeout=self.lock_timeout, blocking_timeout=self.wait_timeout
        )
        if not lock.acquire():
            raise Unavailable(f"timed out waiting for installation {installation_id}'s GitHub write turn")
        try:
            last_key = keys.github_last_write(installation_id)
            last = self.redis.get(last_key)
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
                self.redis.set(last_key, repr(self.clock()), ex=max(int(self.spacing * 10), 10))
        finally:
            try:
                lock.release()
            except LockError:
                pass  # it expired while we held it; the next writer already has it
