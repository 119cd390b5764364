"""`[[notify]]` tables of the fleet policy: who hears about what (the secrets stay in the environment)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from config.durations import parse_duration
from config.errors import ConfigError
from runnerguard.domain.notices import EVENTS

SLACK, WEBHOOK, GITHUB_ISSUE = "slack", "webhook", "github-issue"
KINDS = (SLACK, WEBHOOK, GITHUB_ISSUE)
DEFAULT_COOLDOWN = 3600
ENV_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
REPO_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
# Keys each kind takes: a slack entry has no secret to sign with, a github-issue entry no URL at all.
KEYS = {
    SLACK: {"kind", "name", "url_env", "events", "cooldown"},
    WEBHOOK: {"kind", "name", "url_env", "secret_env", "events", "cooldown"},
    GITHUB_ISSUE: {"kind", "name", "repo", "events", "cooldown"},
}
REQUIRED = {SLACK: ("url_env",), WEBHOOK: ("url_env", "secret_env"), GITHUB_ISSUE: ("repo",)}


@dataclass(frozen=True)
class NotifierSpec:
    """One notifier as the policy declares it: names of environment variables, never their values."""

    kind: str
    name: str
    events: tuple[str, ...] = EVENTS
    cooldown_seconds: int = DEFAULT_COOLDOWN
    url_env: str | None = None
    secret_env: str | None = None
    repo: str | None = None

    def wants(self, event: str) -> bool:
        return event in self.events


def _env_name(value: object, key: str) -> str:
    if not isinstance(value, str) or not ENV_NAME_RE.fullmatch(value):
        # A URL or a secret pasted here would end up in the policy file, which is not a place for secrets.
        raise ConfigError(key, "must name an environment variable (such as SLACK_WEBHOOK_URL), not hold its value")
    return value


def _events(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, f"must be a non-empty list of events ({', '.join(EVENTS)})")
    unknown = [v for v in value if v not in EVENTS]
    if unknown:
        raise ConfigError(key, f"unknown event {unknown[0]!r} (known: {', '.join(EVENTS)})")
    return tuple(dict.fromkeys(value))


def parse_notifier(table: Mapping[str, Any], index: int) -> NotifierSpec:
    where = f"notify[{index}]"
    kind = table.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    unknown = sorted(set(table) - KEYS[kind])
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}",
                          f"unknown key for a {kind} notifier (allowed: {', '.join(sorted(KEYS[kind]))})")
    for key in REQUIRED[kind]:
        if key not in table:
            raise ConfigError(f"{where}.{key}", f"is required for a {kind} notifier")
    name = table.get("name", f"{kind}-{index}")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}.name", f"must be 1-64 letters, digits, '.', '_' or '-', got {name!r}")
    repo = table.get("repo")
    if repo is not None and (not isinstance(repo, str) or not REPO_RE.fullmatch(repo) or ".." in repo):
        raise ConfigError(f"{where}.repo", f"must be a repository as owner/name, got {repo!r}")
    return NotifierSpec(
        kind=kind,
        name=name,
        events=_events(table["events"], f"{where}.events") if "events" in table else EVENTS,
        cooldown_seconds=parse_duration(table["cooldown"], f"{where}.cooldown") if "cooldown" in table
        else DEFAULT_COOLDOWN,
        url_env=_env_name(table["url_env"], f"{where}.url_env") if "url_env" in table else None,
        secret_env=_env_name(table["secret_env"], f"{where}.secret_env") if "secret_env" in table else None,
        repo=repo,
    )


def parse_notifiers(value: object) -> tuple[NotifierSpec, ...]:
    """The `[[notify]]` array; raises ConfigError naming the first bad key."""
    if not isinstance(value, list):
        raise ConfigError("notify", "must be an array of tables ([[notify]])")
    specs: list[NotifierSpec] = []
    for index, table in enumerate(value):
        if not isinstance(table, dict):
            raise ConfigError(f"notify[{index}]", f"must be a table, got {type(table).__name__}")
        specs.append(parse_notifier(table, index))
    _unique(specs)
    return tuple(specs)


def _unique(specs: Sequence[NotifierSpec]) -> None:
    names = [s.name for s in specs]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ConfigError(f"notify.{duplicate}", "is declared twice (give each notifier its own name)")
