"""The GitHub App's private key, read and checked at start: a configured App with a bad key must not start."""

from __future__ import annotations

from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from runnerguard.errors import InvalidInput


class AppKeyError(InvalidInput):
    """The App's private key is missing, unreadable or not RSA; never raised with key material."""


def load_private_key(pem: bytes) -> RSAPrivateKey:
    """Parse a PEM private key; the error says what is wrong and never echoes the key."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # `from None`: the library's own message could quote parts of the input.
        raise AppKeyError(
            "the GitHub App private key is not a readable, unencrypted PEM private key"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise AppKeyError("the GitHub App private key is not an RSA key (GitHub Apps sign JWTs with RS256)")
    return key


def load_private_key_from(path: str | Path | None, pem: str | bytes | None) -> RSAPrivateKey:
    """The key from a file (GITHUB_PRIVATE_KEY_PATH) or inline PEM (GITHUB_PRIVATE_KEY); the file wins."""
    if path:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise AppKeyError(f"cannot read the GitHub App private key file {path}: {exc.strerror}") from None
        return load_private_key(data)
    if pem:
        data = pem.encode("utf-8") if isinstance(pem, str) else pem
        # Env vars often carry the PEM with literal "\n" escapes instead of newlines.
        if b"\n" not in data.strip() and b"\\n" in data:
            data = data.replace(b"\\n", b"\n")
        return load_private_key(data)
    raise AppKeyError("no GitHub App private key: set GITHUB_PRIVATE_KEY_PATH or GITHUB_PRIVATE_KEY")
