"""Settings from the environment (12-factor): a frozen dataclass, validated once at start."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from config.app_key import AppKeyError, load_private_key_from
from config.errors import ConfigError
from runnerguard.domain.url_policy import transport_ok

DEFAULT_GITHUB_API_URL = "https://api.github.com"
DEFAULT_GITHUB_WEB_URL = "https://github.com"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_QUEUES = ("events", "github")
MIN_ADMIN_TOKEN_CHARS = 32
MAX_REDIS_WAIT_MS = 8000
SENTINEL_MASTER_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
SENTINEL_HOST_RE = re.compile(r"[A-Za-z0-9._:-]{1,253}")  # a name, an IPv4 or an IPv6 address, nothing else


@dataclass(frozen=True)
class Settings:
    """Everything runnerguard reads from the environment. `repr` hides every secret."""

    webhook_secret: str = field(repr=False)
    webhook_secret_previous: str = field(default="", repr=False)
    redis_url: str = ""  # required by load_settings: no default, so nothing talks to a Redis nobody configured
    github_app_id: str = ""
    github_private_key_path: Path | None = None
    github_private_key: str = field(default="", repr=False)
    github_api_url: str = DEFAULT_GITHUB_API_URL
    github_web_url: str = DEFAULT_GITHUB_WEB_URL  # where GitHub's pages are: the dashboard links only there
    admin_token: str = field(default="", repr=False)
    metrics_token: str = field(default="", repr=False)
    policy_path: Path | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    job_retention_days: int = 30
    delivery_retention_days: int = 14
    queues: tuple[str, ...] = DEFAULT_QUEUES
    host: str = ""
    log_level: str = "INFO"
    secret_key: str = field(default="", repr=False)
    allow_setup: bool = False
    # Long polls one web process holds at once (GET /agent/v1/work); more answer 204 at once with Retry-After.
    # deploy/gunicorn.conf.py gives each process this many threads more than intake needs.
    agent_long_polls: int = 8
    max_delivery_age_hours: int = 72
    redis_budget_bytes: int = 0
    # Redis Sentinel (issue #18): the primary is found through these; REDIS_URL then only lends its password,
    # database and scheme (rediss:// = TLS to the data nodes).
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = ""
    redis_sentinel_password: str = field(default="", repr=False)
    redis_password: str = field(default="", repr=False)
    redis_min_replicas: int = 0
    periodic_every_seconds: int = 0  # 0: each periodic task at its own interval (worker.py); else all at this one
    redis_wait_ms: int = 1000  # how long the intake waits for them (GitHub gives a delivery 10 s)
    # A delivery's task with no RQ job left to run it is queued again once the delivery is this old
    # (services/lost_tasks.py); the sweep runs every half of it, at most every 5 minutes (worker.py).
    lost_task_grace_seconds: int = 600

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        """Current secret first, then the previous one while a rotation is under way."""
        return tuple(s for s in (self.webhook_secret, self.webhook_secret_previous) if s)

    @property
    def job_retention_seconds(self) -> int:
        return self.job_retention_days * 86400

    @property
    def delivery_retention_seconds(self) -> int:
        return self.delivery_retention_days * 86400

    @property
    def max_delivery_age_seconds(self) -> int:
        return self.max_delivery_age_hours * 3600

    @property
    def body_dedupe_seconds(self) -> int:
        """How long an accepted body's digest is kept: as long as its delivery, and at least as long as a body
        that old is still accepted (else a replay after the delivery log forgot it would pass as new)."""
        return max(self.delivery_retention_seconds, self.max_delivery_age_seconds)

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _int(env: Mapping[str, str], key: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(key, f"must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(key, f"must be at least {minimum}, got {value}")
    return value


def web_url_for(api_url: str) -> str:
    """Where GitHub's pages are: github.com for api.github.com, `https://HOST` for `https://HOST/api/v3`, else the
    API's origin (the simulator serves both)."""
    if api_url.rstrip("/") == DEFAULT_GITHUB_API_URL:
        return DEFAULT_GITHUB_WEB_URL
    parts = urlsplit(api_url)
    return f"{parts.scheme}://{parts.netloc}"


def _web_url(env: Mapping[str, str], api_url: str) -> str:
    raw = env.get("GITHUB_WEB_URL", "").strip().rstrip("/")
    if not raw:
        return web_url_for(api_url)
    parts = urlsplit(raw)
    if (parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment or "@" in raw
            or not transport_ok(raw)):
        raise ConfigError("GITHUB_WEB_URL", "must be an https URL such as https://github.example.com (http only to a "
                          f"loopback host), got {raw!r}")
    return raw


def _check_app_key(app_id: str, key_path: Path | None, key_pem: str) -> None:
    """A configured App needs a readable RSA key: find out at start, not at the first rollback."""
    if not app_id:
        if key_path or key_pem:
            raise ConfigError("GITHUB_APP_ID", "is required when a GitHub App private key is set")
        return
    if not key_path and not key_pem.strip():
        raise ConfigError("GITHUB_PRIVATE_KEY_PATH", "is required (or GITHUB_PRIVATE_KEY) when GITHUB_APP_ID is set")
    try:
        load_private_key_from(key_path, key_pem or None)
    except AppKeyError as exc:
        # The message names the file and what is wrong, never the key's content.
        raise ConfigError("GITHUB_PRIVATE_KEY_PATH" if key_path else "GITHUB_PRIVATE_KEY", str(exc)) from None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate settings; raises ConfigError naming the key and why."""
    env = os.environ if env is None else env
    secret = env.get("GITHUB_WEBHOOK_SECRET", "")
    if not secret.strip():
        # There is deliberately no unsigned mode: an unsigned endpoint would let anyone forge job history.
        raise ConfigError("GITHUB_WEBHOOK_SECRET", "is required (runnerguard has no unsigned mode)")
    key_path_raw = env.get("GITHUB_PRIVATE_KEY_PATH", "").strip()
    policy_raw = env.get("RUNNERGUARD_POLICY", "").strip()
    api_url = env.get("GITHUB_API_URL", "").strip() or DEFAULT_GITHUB_API_URL
    if not api_url.startswith(("https://", "http://")):
        raise ConfigError("GITHUB_API_URL", f"must be an http(s) URL, got {api_url!r}")
    if not transport_ok(api_url):
        # JWTs and installation tokens cross this link: plain http only to this machine (the simulator).
        raise ConfigError("GITHUB_API_URL", f"must be https:// (plain http only to a loopback host), got {api_url!r}")
    redis_url = env.get("REDIS_URL", "").strip()
    sentinels = _sentinels(env)
    master = env.get("REDIS_SENTINEL_MASTER", "").strip()
    if sentinels and not master:
        raise ConfigError("REDIS_SENTINEL_MASTER", "is required when REDIS_SENTINELS is set (the monitored name)")
    if master and not sentinels:
        raise ConfigError("REDIS_SENTINELS", "is required when REDIS_SENTINEL_MASTER is set, e.g. 10.0.0.1:26379")
    if master and not SENTINEL_MASTER_RE.fullmatch(master):
        raise ConfigError("REDIS_SENTINEL_MASTER", "must be 1-64 letters, digits, '.', '_' or '-'")
    if sentinels and not redis_url:
        redis_url = "redis://"  # the primary comes from the Sentinels; no password, database 0, no TLS
    if sentinels and redis_url.startswith("unix://"):
        raise ConfigError("REDIS_URL", "must be redis:// or rediss:// when REDIS_SENTINELS is set")
    if sentinels and urlsplit(redis_url).hostname:
        raise ConfigError("REDIS_URL", "must not name a host when REDIS_SENTINELS is set (the Sentinels name the "
                          "primary): use redis://:PASSWORD@/0 or REDIS_PASSWORD")
    if not redis_url:
        # No default: a guessed redis://127.0.0.1:6379 could be somebody else's Redis (make run writes its own).
        raise ConfigError("REDIS_URL", "is required, e.g. redis://:PASSWORD@127.0.0.1:6379/0")
    if not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL", "must start with redis://, rediss:// or unix://")
    queues = tuple(q.strip() for q in env.get("RUNNERGUARD_QUEUES", "").split(",") if q.strip()) or DEFAULT_QUEUES
    app_id = env.get("GITHUB_APP_ID", "").strip()
    if app_id and not app_id.isdigit():
        raise ConfigError("GITHUB_APP_ID", f"must be the App's numeric id, got {app_id!r}")
    key_pem = env.get("GITHUB_PRIVATE_KEY", "")
    _check_app_key(app_id, Path(key_path_raw) if key_path_raw else None, key_pem)
    admin_token = env.get("ADMIN_TOKEN", "").strip()
    if admin_token and len(admin_token) < MIN_ADMIN_TOKEN_CHARS:
        # The token opens the admin API and the dashboard: a short one falls to guessing. Never echo it.
        raise ConfigError("ADMIN_TOKEN", f"must be at least {MIN_ADMIN_TOKEN_CHARS} characters (got "
                          f"{len(admin_token)}); generate one with: python -c 'import secrets; "
                          "print(secrets.token_urlsafe(32))'")
    wait_ms = _int(env, "RUNNERGUARD_REDIS_WAIT_MS", 1000)
    if wait_ms > MAX_REDIS_WAIT_MS:
        # GitHub gives up on a delivery after 10 s: waiting longer would turn every slow replica into a timeout.
        raise ConfigError("RUNNERGUARD_REDIS_WAIT_MS", f"must be at most {MAX_REDIS_WAIT_MS}, got {wait_ms}")
    return Settings(
        webhook_secret=secret,
        webhook_secret_previous=env.get("GITHUB_WEBHOOK_SECRET_PREVIOUS", ""),
        redis_url=redis_url,
        github_app_id=app_id,
        github_private_key_path=Path(key_path_raw) if key_path_raw else None,
        github_private_key=key_pem,
        github_api_url=api_url.rstrip("/"),
        github_web_url=_web_url(env, api_url),
        admin_token=admin_token,
        metrics_token=env.get("METRICS_TOKEN", "").strip(),
        policy_path=Path(policy_raw) if policy_raw else None,
        max_body_bytes=_int(env, "RUNNERGUARD_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        job_retention_days=_int(env, "RUNNERGUARD_JOB_RETENTION_DAYS", 30),
        delivery_retention_days=_int(env, "RUNNERGUARD_DELIVERY_RETENTION_DAYS", 14),
        queues=queues,
        host=env.get("RUNNERGUARD_HOST", "").strip() or socket.gethostname(),
        log_level=env.get("RUNNERGUARD_LOG_LEVEL", "INFO").strip().upper() or "INFO",
        secret_key=env.get("RUNNERGUARD_SECRET_KEY", ""),
        allow_setup=env.get("RUNNERGUARD_ALLOW_SETUP", "").strip().lower() in ("1", "true", "yes"),
        agent_long_polls=_int(env, "RUNNERGUARD_AGENT_LONG_POLLS", 8),
        max_delivery_age_hours=_int(env, "RUNNERGUARD_MAX_DELIVERY_AGE_HOURS", 72, minimum=0),
        redis_budget_bytes=_int(env, "RUNNERGUARD_REDIS_BUDGET_BYTES", 0, minimum=0),
        redis_sentinels=sentinels,
        redis_sentinel_master=master,
        redis_sentinel_password=env.get("REDIS_SENTINEL_PASSWORD", ""),
        redis_password=env.get("REDIS_PASSWORD", ""),
        redis_min_replicas=_int(env, "RUNNERGUARD_REDIS_MIN_REPLICAS", 0, minimum=0),
        redis_wait_ms=wait_ms,
        periodic_every_seconds=_int(env, "RUNNERGUARD_PERIODIC_EVERY_SECONDS", 0, minimum=0),
        lost_task_grace_seconds=_int(env, "RUNNERGUARD_LOST_TASK_GRACE_SECONDS", 600, minimum=10),
    )


DEFAULT_AGENT_LISTEN = "127.0.0.1:8377"
DEFAULT_AGENT_STATE = "/var/cache/runnerguard/agent"
_HOST_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class AgentSettings:
    """What the runner host's agent reads (`worker.py --prewarm`): no Redis URL, no webhook secret, ever.

    `token` may be empty: the agent then says so and retries, it does not crash-loop (systemd would restart it).
    """

    url: str
    host: str
    token: str = field(default="", repr=False)
    policy_path: Path | None = None
    listen_host: str = "127.0.0.1"
    listen_port: int = 8377
    state_dir: Path = Path(DEFAULT_AGENT_STATE)
    log_level: str = "INFO"

    def with_overrides(self, **changes: object) -> AgentSettings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _agent_url(raw: str) -> str:
    """The web tier's base URL: https, or http only to a loopback address (the host token crosses with it)."""
    parts = urlsplit(raw)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError("RUNNERGUARD_URL", f"must be an https:// URL, got {raw!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError("RUNNERGUARD_URL", "must be a base URL without credentials, query or fragment")
    if any(ch.isspace() or ord(ch) < 32 for ch in raw):
        raise ConfigError("RUNNERGUARD_URL", "must not contain whitespace or control characters")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ConfigError("RUNNERGUARD_URL", f"must be https:// (the host token goes with every request), got {raw!r}")
    return raw.rstrip("/")


def _agent_listen(raw: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:PORT` for IPv6) on a loopback address only: any job on the host may ask, nobody else."""
    host, sep, port = raw.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError("RUNNERGUARD_AGENT_LISTEN", f"must be HOST:PORT, got {raw!r}")
    if not _loopback(host):
        raise ConfigError("RUNNERGUARD_AGENT_LISTEN", f"must be a loopback address (127.0.0.1, ::1), got {host!r}")
    return ("127.0.0.1" if host == "localhost" else host), int(port)


def load_agent_settings(env: Mapping[str, str] | None = None) -> AgentSettings:
    """The agent's settings; raises ConfigError naming the key. REDIS_URL and the webhook secret are never read."""
    env = os.environ if env is None else env
    url_raw = env.get("RUNNERGUARD_URL", "").strip()
    if not url_raw:
        raise ConfigError("RUNNERGUARD_URL", "is required: the web tier's base URL, e.g. https://runnerguard.example.org")
    # the machine's name by default, as for the central tier: `hosts add` usually registers just that
    host = env.get("RUNNERGUARD_HOST", "").strip() or socket.gethostname().split(".")[0]
    if not _HOST_NAME.fullmatch(host) or set(host) == {"."}:
        raise ConfigError("RUNNERGUARD_HOST", f"must be this host's name as registered (got {host!r:.80})")
    listen_host, listen_port = _agent_listen(env.get("RUNNERGUARD_AGENT_LISTEN", "").strip() or DEFAULT_AGENT_LISTEN)
    policy_raw = env.get("RUNNERGUARD_POLICY", "").strip()
    state_raw = env.get("RUNNERGUARD_AGENT_STATE", "").strip() or DEFAULT_AGENT_STATE
    if not Path(state_raw).is_absolute():
        raise ConfigError("RUNNERGUARD_AGENT_STATE", f"must be an absolute path, got {state_raw!r}")
    return AgentSettings(
        url=_agent_url(url_raw),
        host=host,
        token=env.get("RUNNERGUARD_HOST_TOKEN", "").strip(),
        policy_path=Path(policy_raw) if policy_raw else None,
        listen_host=listen_host,
        listen_port=listen_port,
        state_dir=Path(state_raw),
        log_level=env.get("RUNNERGUARD_LOG_LEVEL", "INFO").strip().upper() or "INFO",
    )


def _sentinels(env: Mapping[str, str]) -> tuple[tuple[str, int], ...]:
    """REDIS_SENTINELS=host:port,host:port (IPv6 as [addr]:port) -> ((host, port), ...)."""
    raw = env.get("REDIS_SENTINELS", "").strip()
    found: list[tuple[str, int]] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        host, sep, port_raw = item.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not sep or not SENTINEL_HOST_RE.fullmatch(host) or not port_raw.isdigit() \
                or not 0 < int(port_raw) < 65536:
            raise ConfigError("REDIS_SENTINELS", f"must be host:port[,host:port...], got {item[:100]!r}")
        found.append((host, int(port_raw)))
    if raw and not found:
        raise ConfigError("REDIS_SENTINELS", "names no sentinel, e.g. 10.0.0.1:26379,10.0.0.2:26379")
    return tuple(found)


__all__ = ["AgentSettings", "ConfigError", "Settings", "load_agent_settings", "load_settings"]
