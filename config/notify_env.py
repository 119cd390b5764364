"""The notifiers' secrets, read from the environment the policy names (`url_env`, `secret_env`), checked at start."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from config.errors import ConfigError
from config.notify_policy import NotifierSpec
from runnerguard.domain.url_policy import is_loopback_host

DASHBOARD_URL_ENV = "RUNNERGUARD_DASHBOARD_URL"


@dataclass(frozen=True)
class NotifyTarget:
    """A notifier ready to deliver: its spec, and the URL and signing secret (never shown in a repr or a log)."""

    spec: NotifierSpec
    url: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind


def check_url(url: str, key: str) -> str:
    """https:// only (plain http for loopback relays and tests); no credentials, spaces or fragments."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing it is the check: a bad port raises here
    except ValueError:
        raise ConfigError(key, "is not a URL") from None
    host = parts.hostname or ""
    if any(c.isspace() or ord(c) < 32 for c in url) or not host or "@" in parts.netloc or parts.fragment:
        raise ConfigError(key, "must be a plain https:// URL (no credentials, spaces or fragment)")
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(host)):
        return url
    # The message never repeats the URL: a Slack webhook URL is itself the secret.
    raise ConfigError(key, "must be an https:// URL (plain http only to a loopback address)")


def load_targets(specs: Sequence[NotifierSpec], env: Mapping[str, str] | None = None) -> tuple[NotifyTarget, ...]:
    """Every notifier with its URL and secret; raises ConfigError naming the missing or bad variable."""
    env = os.environ if env is None else env
    targets = []
    for spec in specs:
        url = secret = ""
        if spec.url_env:
            url = env.get(spec.url_env, "").strip()
            if not url:
                raise ConfigError(spec.url_env, f"is required by the {spec.name} notifier (notify url_env)")
            check_url(url, spec.url_env)
        if spec.secret_env:
            secret = env.get(spec.secret_env, "")
            if len(secret.strip()) < 16:
                raise ConfigError(spec.secret_env, f"is required by the {spec.name} notifier (notify secret_env), "
                                  "at least 16 characters")
        targets.append(NotifyTarget(spec=spec, url=url, secret=secret))
    return tuple(targets)


def dashboard_url(env: Mapping[str, str] | None = None) -> str:
    """Where messages link to the dashboard (RUNNERGUARD_DASHBOARD_URL, optional): "" when not set."""
    env = os.environ if env is None else env
    url = env.get(DASHBOARD_URL_ENV, "").strip().rstrip("/")
    return check_url(url, DASHBOARD_URL_ENV) if url else ""


@dataclass(frozen=True)
class NotifyConfig:
    """What the delivery tasks need: the notifiers, and the dashboard's address for links."""

    targets: tuple[NotifyTarget, ...] = ()
    dashboard_url: str = ""

    @property
    def specs(self) -> tuple[NotifierSpec, ...]:
        return tuple(t.spec for t in self.targets)

    def target(self, name: str) -> NotifyTarget | None:
        return next((t for t in self.targets if t.name == name), None)


def load_notify(specs: Sequence[NotifierSpec], env: Mapping[str, str] | None = None) -> NotifyConfig:
    return NotifyConfig(targets=load_targets(specs, env), dashboard_url=dashboard_url(env))
