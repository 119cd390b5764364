"""Host tokens: one per runner host, kept only as a SHA-256, looked up by it and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

import redis

from runnerguard.store import keys

TOKEN_PREFIX = "rgh_"  # noqa: S105 - not a secret: recognisable in a leaked paste (secret scanners), never a part of the hash's secrecy
TOKEN_BYTES = 32


@dataclass(frozen=True)
class HostRecord:
    name: str
    created_at: float
    last_seen: float | None = None


def digest(token: str) -> str:
    # A 32-byte random token needs no slow hash: nobody can guess it, only a stored hash could leak.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _decoded(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def add(client: redis.Redis, name: str, *, now: float) -> str | None:
    """Create the host and return its token (the only time it exists in clear); None if the host exists."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    token_hash = digest(token)
    record = json.dumps({"created_at": now, "token_sha256": token_hash})
    if not client.hsetnx(keys.HOSTS, name, record):
        return None
    client.set(keys.host_token(token_hash), name)
    return token


def revoke(client: redis.Redis, name: str) -> bool:
    """Forget the host's token: every request with it is refused from now on. False if there was none."""
    raw = client.hget(keys.HOSTS, name)
    if raw is None:
        return False
    token_hash = json.loads(raw)["token_sha256"]
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.host_token(token_hash))
    pipe.hdel(keys.HOSTS, name)
    pipe.execute()
    return True


def host_for(client: redis.Redis, token: str) -> str | None:
    """The host a presented token belongs to, or None (unknown, revoked)."""
    if not token or len(token) > 200:
        return None
    token_hash = digest(token)
    name = _decoded(client.get(keys.host_token(token_hash)))
    if name is None:
        return None
    raw = client.hget(keys.HOSTS, name)
    if raw is None:
        return None
    stored = str(json.loads(raw)["token_sha256"])
    # The lookup by hash found it; comparing the host's own record in constant time guards a stale index entry.
    return name if hmac.compare_digest(stored.encode(), token_hash.encode()) else None


def records(client: redis.Redis) -> list[HostRecord]:
    """Every host holding a token, by name, with when it last reported."""
    raw: dict[Any, Any] = client.hgetall(keys.HOSTS)
    names = sorted(str(_decoded(k)) for k in raw)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.get(keys.host_report(name))
    reports = pipe.execute()
    out = []
    for name, report in zip(names, reports, strict=True):
        data = json.loads(raw[name.encode()] if name.encode() in raw else raw[name])
        seen = json.loads(report)["received_at"] if report else None
        out.append(HostRecord(name=name, created_at=float(data["created_at"]), last_seen=seen))
    return out


def exists(client: redis.Redis, name: str) -> bool:
    return bool(client.hexists(keys.HOSTS, name))
