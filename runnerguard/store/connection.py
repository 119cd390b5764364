"""The one way runnerguard opens Redis: a URL (redis://, rediss://, unix://) or the primary named by Sentinels."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.connection import SSLConnection, parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from config import Settings

# What every process uses unless it asks otherwise: a dead primary is noticed within seconds, not minutes.
SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
HEALTH_CHECK_EVERY = 30
SENTINEL_TIMEOUT = 1.0  # a Sentinel answers in milliseconds; a silent one (its host cut off) is skipped after this
# The web's budget: GitHub gives up on a delivery after 10 s and counts it failed. A primary whose host vanished
# without closing its sockets must cost a request a few seconds (then 503), never GitHub's whole 10 s: measured in
# the three-host reliability run, redis-py's defaults (5 s reads, 3 retries) held requests for over a minute.
WEB_SOCKET_TIMEOUT = 2.0
WEB_CONNECT_TIMEOUT = 1.0
WEB_RETRIES = 1


class FollowingConnection(SentinelManagedConnection):
    """A Sentinel-managed connection that asks the Sentinels again on every reconnect, whichever path reconnects.

    In redis-py 8.1, a command sent on a dropped connection reconnects through `send_packed_command` ->
    `connect_check_health`, which skips the Sentinel lookup of `SentinelManagedConnection.connect` and dials the
    old primary's address forever (found here: SIGKILL the primary, every later command is refused by the dead
    address while the Sentinels name the new one). Reconnecting through `connect()` first follows the failover.
    """

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            self.connect()  # type: ignore[no-untyped-call]  # redis-py's Sentinel module is untyped
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


class FollowingSSLConnection(FollowingConnection, SSLConnection):
    """The same over TLS (rediss:// with REDIS_SENTINELS)."""


def web_socket_timeout(settings: Settings) -> float:
    """WEB_SOCKET_TIMEOUT, or longer when the intake waits longer than that for its replicas (WAIT's answer)."""
    waits = settings.redis_wait_ms / 1000 + 1 if settings.redis_min_replicas else 0.0
    return max(WEB_SOCKET_TIMEOUT, waits)


def connect(settings: Settings, *, socket_timeout: float | None = SOCKET_TIMEOUT,
            socket_connect_timeout: float = CONNECT_TIMEOUT,
            health_check_interval: int = HEALTH_CHECK_EVERY, retries: int | None = None,
            max_connections: int | None = None) -> redis.Redis:
    """A client of the configured Redis; with REDIS_SENTINELS, of the current primary, wherever it moves.

    A Sentinel-managed client asks the Sentinels for the primary whenever it (re)connects, and drops a connection
    that finds a demoted primary (READONLY), so a failover costs the callers errors for its duration only: the web
    answers 503 meanwhile and the workers wait (`survive_outages`). `max_connections` caps the pool (for a URL, a
    pool that waits up to 2 s for a free connection; behind Sentinels, one that refuses past the cap).
    """
    options: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_connect_timeout,
                               "health_check_interval": health_check_interval}
    if retries is not None:  # else redis-py's default (3 retries, exponential backoff)
        options["retry"] = Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries)
    if not settings.redis_sentinels:
        if settings.redis_password:
            options["password"] = settings.redis_password  # a URL's own password wins (from_url overrides it)
        if max_connections is not None:
            pool = redis.BlockingConnectionPool.from_url(settings.redis_url, max_connections=max_connections,
                                                         timeout=2, **options)
            return redis.Redis(connection_pool=pool)
        return redis.Redis.from_url(settings.redis_url, **options)
    if max_connections is not None:
        options["max_connections"] = max_connections
    return _sentinel_master(settings, options)


def _sentinel_master(settings: Settings, options: dict[str, Any]) -> redis.Redis:
    url: dict[str, Any] = parse_url(settings.redis_url)  # type: ignore[no-untyped-call]  # password, username, db, and for rediss:// the TLS options
    data: dict[str, Any] = dict(options)
    for name in ("username", "password", "db"):
        if url.get(name) is not None:
            data[name] = url[name]
    if "password" not in data and settings.redis_password:
        data["password"] = settings.redis_password
    if settings.redis_url.startswith("rediss://"):
        # The ssl_* query options (ssl_ca_certs, ssl_cert_reqs ...) pass through to the TLS connections.
        data["connection_class"] = FollowingSSLConnection
        data.update({k: v for k, v in url.items() if k.startswith("ssl_")})
    data.setdefault("connection_class", FollowingConnection)
    # One attempt per Sentinel and lookup: redis-py's default (10 retries with backoff) made a Sentinel whose host
    # was cut off cost every lookup ~14 s before the next Sentinel was asked (the three-host run: requests to
    # healthy webs unanswered for 10 s whenever a thread opened a connection). The lookup itself tries the others.
    sentinel_options = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT,
                        "password": settings.redis_sentinel_password or None, "retry": Retry(NoBackoff(), 0)}
    # redis-py's Sentinel module is untyped.
    sentinel = Sentinel(list(settings.redis_sentinels), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(settings.redis_sentinel_master, **data)  # type: ignore[no-untyped-call]
    return client
