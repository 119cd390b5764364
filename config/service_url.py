"""Where the running web service answers, for commands that talk to it (`deliveries send-test`)."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from config.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = "8000"
HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
ANY_ADDRESS = ("0.0.0.0", "::", "[::]")  # noqa: S104 - bind addresses mapped to one a client can reach


def service_url(env: Mapping[str, str] | None = None) -> str:
    """RUNNERGUARD_URL (make run records it in .env), else http://HOST:PORT as the Procfile binds them."""
    env = os.environ if env is None else env
    explicit = env.get("RUNNERGUARD_URL", "").strip().rstrip("/")
    if explicit:
        try:
            parts = urlsplit(explicit)
            parts.port  # noqa: B018 - parsing it is the check: a bad port raises here
        except ValueError:
            raise ConfigError("RUNNERGUARD_URL", f"is not a URL: {explicit[:80]!r}") from None
        # A signed body goes there: no credentials, query or fragment that could send it somewhere unexpected.
        if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc or parts.query \
                or parts.fragment or any(c.isspace() for c in explicit):
            raise ConfigError("RUNNERGUARD_URL", f"must be an http(s) URL such as http://127.0.0.1:8000, "
                              f"got {explicit[:80]!r}")
        return explicit
    host = env.get("HOST", "").strip() or DEFAULT_HOST
    host = DEFAULT_HOST if host in ANY_ADDRESS else host
    if not _valid_host(host):
        raise ConfigError("HOST", f"must be an IP address or a host name, got {host[:40]!r}")
    port = env.get("PORT", "").strip() or DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("PORT", f"must be a TCP port number, got {port[:20]!r}")
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return HOSTNAME_RE.fullmatch(host) is not None
