"""The one way runnerguard opens Redis: a URL (redis://, rediss://, unix://) or the primary named by Sentinels."""

from __future__ import annotations

from typing import Any

import redis
from redis.connection import SSLConnection, parse_url
from redis.sentinel import Sentinel, SentinelManagedConnection

from config import Settings

# What every process uses unless it asks otherwise: a dead primary is noticed within seconds, not minutes.
SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
HEALTH_CHECK_EVERY = 30


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


def connect(settings: Settings, *, socket_timeout: float | None = SOCKET_TIMEOUT,
            socket_connect_timeout: float = CONNECT_TIMEOUT,
            health_check_interval: int = HEALTH_CHECK_EVERY) -> redis.Redis:
    """A client of the configured Redis; with REDIS_SENTINELS, of the current primary, wherever it moves.

    A Sentinel-managed client asks the Sentinels for the primary whenever it (re)connects, and drops a connection
    that finds a demoted primary (READONLY), so a failover costs the callers errors for its duration only: the web
    answers 503 meanwhile and the workers wait (`survive_outages`).
    """
    options: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_connect_timeout,
                               "health_check_interval": health_check_interval}
    if not settings.redis_sentinels:
        if settings.redis_password:
            options["password"] = settings.redis_password  # a URL's own password wins (from_url overrides it)
        return redis.Redis.from_url(settings.redis_url, **options)
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
    sentinel_options = {"socket_timeout": CONNECT_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT,
                        "password": settings.redis_sentinel_password or None}
    # redis-py's Sentinel module is untyped.
    sentinel = Sentinel(list(settings.redis_sentinels), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(settings.redis_sentinel_master, **data)  # type: ignore[no-untyped-call]
    return client
