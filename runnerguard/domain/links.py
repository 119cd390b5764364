"""Which links the dashboard may render: only pages of GitHub (or the configured GitHub host), never a payload's URL."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

GITHUB_WEB = "https://github.com"
# What a GitHub page path is made of; anything else (quotes, spaces, backslashes, control characters) is refused
# rather than escaped, since a link a person clicks must be the page it says it is.
SAFE_PATH = re.compile(r"^[A-Za-z0-9._~/%+:@!$&'()*,;=-]*$")
MAX_LENGTH = 2048


def web_bases(configured: str | None) -> tuple[str, ...]:
    """github.com, and the configured GitHub web host (GitHub Enterprise, the simulator) when there is one."""
    bases = [GITHUB_WEB]
    if configured and configured.rstrip("/") != GITHUB_WEB:
        bases.append(configured.rstrip("/"))
    return tuple(bases)


def safe_link(url: object, bases: Iterable[str]) -> str | None:
    """`url` when it is a page under one of `bases` (same scheme, host and port, path below the base's), else None.

    A `javascript:` or `data:` URL, another host, `https://github.com.evil.example/...`, user info
    (`https://github.com@evil.example/`), a query-less trick with a backslash: all None.
    """
    if not isinstance(url, str) or not url or len(url) > MAX_LENGTH:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.username is not None or parts.password is not None or not SAFE_PATH.match(parts.path):
        return None
    if any(ord(c) < 0x21 or c in '"<>\\`^{|}' for c in url):
        return None
    for base in bases:
        allowed = urlsplit(base)
        same_origin = (parts.scheme.lower(), parts.netloc.lower()) == (allowed.scheme.lower(), allowed.netloc.lower())
        prefix = allowed.path.rstrip("/") + "/"
        if same_origin and parts.scheme.lower() in ("https", "http") and parts.path.startswith(prefix):
            return url
    return None
