"""While Redis does not answer, the intake answers 503 at once instead of every request waiting out its timeouts.

A primary whose host vanished (no RST: a cut cable, a dead machine) costs each request its socket timeouts, 2-4 s,
until the Sentinels promote a replica. A web process has a dozen threads: at 70 deliveries/s they are all waiting
within a fraction of a second, and the deliveries behind them queue in the listen backlog until GitHub's 10 s are
up, unanswered (measured in the three-host reliability run: 217 requests to webs that were fine timed out while the
primary's host was cut off). After a connection error or a timeout the gate stays shut for a moment, then lets one
request at a time try Redis again; the first that gets through opens it for everyone. A 503 is what GitHub
redelivers, so a shut gate loses nothing; it only stops the process from queueing work it cannot do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

HOLD_SECONDS = 0.5  # after a failure, how long every request is refused before one tries Redis again
# Errors that mean Redis is not answering (MasterNotFoundError, no Sentinel names a primary, is a ConnectionError).
# A refusal Redis answered quickly (read-only, out of memory, too few replicas) costs no timeout: not counted.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)


class RedisGate:
    """Per web process, shared by its threads: closed (everyone goes to Redis), or shut after a failure."""

    def __init__(self, *, hold: float = HOLD_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.hold = hold
        self.clock = clock
        self._lock = threading.Lock()
        self._shut_until: float | None = None  # None: closed, requests go through
        self._trying = False  # one request is finding out whether Redis is back

    def admit(self) -> bool:
        """May this request use Redis? False: answer 503 at once. A True while shut makes it the one trial."""
        with self._lock:
            if self._shut_until is None:
                return True
            if self._trying or self.clock() < self._shut_until:
                return False
            self._trying = True
            return True

    def succeeded(self) -> None:
        with self._lock:
            self._shut_until = None
            self._trying = False

    def failed(self, exc: BaseException) -> None:
        """A request's Redis call raised `exc`: shut the gate if Redis did not answer; let the trial end either way."""
        with self._lock:
            self._trying = False
            if isinstance(exc, UNREACHABLE):
                self._shut_until = self.clock() + self.hold
            elif self._shut_until is not None:
                self._shut_until = None  # Redis answered (a refusal of its own): it is reachable again

    @property
    def shut(self) -> bool:
        with self._lock:
            return self._shut_until is not None
