"""The GitHub App's private key and the App JWT (RS256) it signs."""

from __future__ import annotations

import secrets
from pathlib import Path

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from runnerguard.github.errors import GitHubKeyError

# GitHub refuses a JWT whose lifetime is over 10 minutes; back-dating `iat` by 60 s absorbs clock drift.
JWT_BACKDATE = 60
JWT_LIFETIME = 540  # exp = now + 9 min, so exp - iat is exactly the 10 minutes GitHub allows


def load_private_key(pem: bytes) -> RSAPrivateKey:
    """Parse a PEM private key; the error says what is wrong and never echoes the key."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # `from None`: the library's own message could quote parts of the input.
        raise GitHubKeyError(
            "the GitHub App private key is not a readable, unencrypted PEM private key"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise GitHubKeyError("the GitHub App private key is not an RSA key (GitHub Apps sign JWTs with RS256)")
    return key


def load_private_key_from(path: str | Path | None, pem: str | bytes | None) -> RSAPrivateKey:
    """The key from a file (GITHUB_PRIVATE_KEY_PATH) or inline PEM (GITHUB_PRIVATE_KEY); the file wins."""
    if path:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise GitHubKeyError(f"cannot read the GitHub App private key file {path}: {exc.strerror}") from None
        return load_private_key(data)
    if pem:
        data = pem.encode("utf-8") if isinstance(pem, str) else pem
        # Env vars often carry the PEM with literal "\n" escapes instead of newlines.
        if b"\n" not in data.strip() and b"\\n" in data:
            data = data.replace(b"\\n", b"\n")
        return load_private_key(data)
    raise GitHubKeyError("no GitHub App private key: set GITHUB_PRIVATE_KEY_PATH or GITHUB_PRIVATE_KEY")


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
