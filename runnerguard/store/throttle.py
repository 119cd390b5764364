"""Throttle failed authentication in Redis, so every web process shares the count: per client address and overall."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import redis

from runnerguard.store import keys


@dataclass(frozen=True)
class Limits:
    """Failures allowed per fixed window, from one address and from all addresses together."""

    per_address: int = 10
    overall: int = 100
    window_seconds: int = 60


def client_key(address: str | None) -> str:
    """An IPv4 address as it is; an IPv6 one by its /64, since one host is usually given a whole /64 to rotate in."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False).network_address)
    return str(ip)


class Throttle:
    """One scope (the login form, the bearer API) over the shared Redis; cheap to build per request."""

    def __init__(self, client: redis.Redis, scope: str, limits: Limits = Limits()) -> None:
        self.client = client
        self.limits = limits
        self.scope = scope

    def _keys(self, address: str | None) -> tuple[str, str]:
        return keys.auth_failures(self.scope, client_key(address)), keys.auth_failures(self.scope, "*")

    def retry_after(self, address: str | None) -> int:
        """0 when `address` may try now, else the seconds until it may (one round trip)."""
        own, overall = self._keys(address)
        pipe = self.client.pipeline(transaction=False)
        for key in (own, overall):
            pipe.get(key)
        for key in (own, overall):
            pipe.ttl(key)
        own_count, all_count, own_ttl, all_ttl = pipe.execute()
        wait = 0
        for count, ttl, limit in ((own_count, own_ttl, self.limits.per_address),
                                  (all_count, all_ttl, self.limits.overall)):
            if count is not None and int(count) >= limit:
                wait = max(wait, int(ttl) if int(ttl) > 0 else 1)  # a key about to expire still says "wait"
        return wait

    def failed(self, address: str | None) -> bool:
        """Count one failure; True when it is the one that starts a burst (log that once, not every attempt)."""
        own, overall = self._keys(address)
        window = self.limits.window_seconds
        pipe = self.client.pipeline(transaction=True)
        # SET NX EX then INCR: the window starts at the first failure and is never pushed back by later ones.
        for key in (own, overall):
            pipe.set(key, 0, ex=window, nx=True)
            pipe.incr(key)
        _, own_count, _, all_count = pipe.execute()
        return bool(own_count == self.limits.per_address or all_count == self.limits.overall)

