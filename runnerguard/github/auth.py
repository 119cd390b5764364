"""The GitHub App's private key and the App JWT (RS256) it signs."""

from __future__ import annotations

import secrets

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from config.app_key import load_private_key, load_private_key_from

__all__ = ["load_private_key", "load_private_key_from", "mint_app_jwt"]

# GitHub refuses a JWT whose lifetime is over 10 minutes; back-dating `iat` by 60 s absorbs clock drift.
JWT_BACKDATE = 60
JWT_LIFETIME = 540  # exp = now + 9 min, so exp - iat is exactly the 10 minutes GitHub allows


def mint_app_jwt(app_id: int | str, key: RSAPrivateKey, now: float) -> str:
    """An App JWT valid from 60 s ago for 10 minutes, with a random `jti`."""
    issued = int(now) - JWT_BACKDATE
    claims = {
        "iss": str(app_id),
        "iat": issued,
        "exp": int(now) + JWT_LIFETIME,
        "jti": secrets.token_hex(16),
    }
    return jwt.encode(claims, key, algorithm="RS256")
