"""A memory budget below Redis's maxmemory: past it, the intake keeps the delivery log and sheds what can wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

READ_EVERY = 1.0  # seconds: one INFO a second per process, whatever the request rate


class MemoryGauge:
    """`used_memory` from INFO, read at most once per `READ_EVERY` and shared by the process's threads."""

    def __init__(self, client: redis.Redis, *, budget_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.budget_bytes = budget_bytes
        self.clock = clock
        self._read_at: float | None = None
        self._used = 0
        self._lock = threading.Lock()

    def used_memory(self) -> int:
        now = self.clock()
        if self._read_at is not None and now - self._read_at < READ_EVERY:
            return self._used
        with self._lock:
            if self._read_at is None or now - self._read_at >= READ_EVERY:
                self._read_at = now  # set first: a Redis error below does not turn into an INFO per request
                try:
                    self._used = int(self.client.info("memory")["used_memory"])
                except redis.RedisError:
                    pass  # keep the last reading; the delivery's own write will report the outage
        return self._used

    def over_budget(self) -> bool:
        """True when a budget is set (not 0) and Redis uses more than it."""
        return self.budget_bytes > 0 and self.used_memory() > self.budget_bytes
