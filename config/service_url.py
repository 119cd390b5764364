"""Where the running web service answers, for commands that talk to it (`deliveries send-test`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from config.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = "8000"
ANY_ADDRESS = ("0.0.0.0", "::", "[::]")  # noqa: S104 - bind addresses mapped to one a client can reach


def service_url(env: Mapping[str, str] | None = None) -> str:
    """RUNNERGUARD_URL (make run records it in .env), else http://HOST:PORT as the Procfile binds them."""
    env = os.environ if env is None else env
    explicit = env.get("RUNNERGUARD_URL", "").strip().rstrip("/")
    if explicit:
        parts = urlsplit(explicit)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("RUNNERGUARD_URL", f"must be an http(s) URL such as http://127.0.0.1:8000, "
                              f"got {explicit[:80]!r}")
        return explicit
    host = env.get("HOST", "").strip() or DEFAULT_HOST
    host = DEFAULT_HOST if host in ANY_ADDRESS else host
    port = env.get("PORT", "").strip() or DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("PORT", f"must be a TCP port number, got {port[:20]!r}")
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"
