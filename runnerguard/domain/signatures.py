"""GitHub webhook signatures (X-Hub-Signature-256): pure, no I/O, failing closed."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

PREFIX = "sha256="


def sign(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` header GitHub would send for `body`."""
    return PREFIX + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secrets: Iterable[str], body: bytes, header: str | None) -> bool:
    """True if `header` is a valid signature of `body` under any of `secrets` (current, then previous).

    Fails closed: no secret, no header, a wrong prefix or a malformed digest is never valid. GitHub sends lower-case
    hex, and so do we: an upper-case digest is a different string and is refused, like any other altered header.
    """
    if not header or not header.startswith(PREFIX):
        return False
    candidate = header.encode("ascii", "replace")
    valid = False
    for secret in secrets:
        if not secret:
            continue
        # compare_digest on every secret (no early exit) keeps the timing independent of which one matched.
        valid |= hmac.compare_digest(sign(secret, body).encode("ascii"), candidate)
    return valid
