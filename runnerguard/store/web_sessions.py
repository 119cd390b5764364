"""Dashboard sessions kept in Redis: the cookie holds only a random id; logout or a new admin token ends them."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import redis

from runnerguard.store import keys

BINDING_CONTEXT = b"runnerguard session binding v1"


def _binding_key(admin_token: str) -> bytes:
    # Sessions are looked up under a key derived from the admin token: change the token and none is found again.
    return hmac.new(admin_token.encode(), BINDING_CONTEXT, hashlib.sha256).digest()


def _key(admin_token: str, session_id: str) -> str:
    # Redis holds an HMAC of the id, never the id: reading Redis does not hand out a working cookie.
    return keys.web_session(hmac.new(_binding_key(admin_token), session_id.encode(), hashlib.sha256).hexdigest())


def open_session(client: redis.Redis, admin_token: str, *, ttl_seconds: int) -> str:
    """A new random session id, valid for `ttl_seconds` (an absolute lifetime, not extended by use)."""
    session_id = secrets.token_urlsafe(32)
    client.set(_key(admin_token, session_id), int(time.time()), ex=ttl_seconds)
    return session_id


def is_open(client: redis.Redis, admin_token: str, session_id: object) -> bool:
    if not isinstance(session_id, str) or not session_id or len(session_id) > 100:
        return False
    return bool(client.exists(_key(admin_token, session_id)))


def close(client: redis.Redis, admin_token: str, session_id: object) -> None:
    if isinstance(session_id, str) and session_id and len(session_id) <= 100:
        client.delete(_key(admin_token, session_id))
