"""What may be pre-warmed: cache artifacts and commands from the policy file, validated strictly at load."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from runnerguard.domain.url_policy import transport_ok
from runnerguard.errors import InvalidInput

Unpack = Literal["none", "zip", "tar.gz", "tar.zst"]
UNPACK_KINDS: tuple[Unpack, ...] = ("none", "zip", "tar.gz", "tar.zst")

_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# a systemd unit name as `systemctl` takes it; never starting with '-', so it cannot read as an option
UNIT_NAME = re.compile(r"[A-Za-z0-9_:@][A-Za-z0-9_.:@\\-]{0,240}\.service")

DEFAULT_TTL_SECONDS = 600
MAX_TTL_SECONDS = 7 * 24 * 3600
MAX_COMMAND_SECONDS = 24 * 3600.0


class SpecError(InvalidInput):
    """A policy table that cannot be used; the message names the key and says why."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key}: {why}")
        self.key = key
        self.why = why


def safe_name(value: object, *, key: str = "name") -> str:
    """`value` if it is 1-64 characters of [A-Za-z0-9._-] and not only dots, else SpecError.

    Use it on anything from a webhook payload (repository, runner, workflow names) before it meets a path,
    an argv or a Redis key: "." and ".." match the character class but walk directories, so they are refused too.
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise SpecError(key, f"must be 1-64 characters of A-Z a-z 0-9 . _ - (got {value!r:.80})")
    if set(value) == {"."}:
        raise SpecError(key, f"must not be only dots (got {value!r})")
    return value


def safe_repo(value: object, *, key: str = "repo") -> str:
    """`owner/name` with both halves passing `safe_name`; the form GitHub's `repository.full_name` takes."""
    if not isinstance(value, str) or value.count("/") != 1:
        raise SpecError(key, f"must be owner/name (got {value!r:.80})")
    owner, name = value.split("/")
    return f"{safe_name(owner, key=key)}/{safe_name(name, key=key)}"


def _str(table: Mapping[str, Any], key: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise SpecError(key, "is required and must be a non-empty string")
    return value


def _names(table: Mapping[str, Any], key: str, *, required: bool, check: Any = safe_name) -> tuple[str, ...]:
    value = table.get(key, [] if not required else None)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SpecError(key, "must be a list of strings")
    if required and not value:
        raise SpecError(key, "must name at least one pool")
    return tuple(check(item, key=key) for item in value)


def _int(table: Mapping[str, Any], key: str, default: int | None, *, low: int, high: int | None = None) -> int | None:
    value = table.get(key, default)
    if value is None:
        return None
    # bool is an int in Python; `size = true` is a typo, not a size
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(key, f"must be an integer (got {value!r:.40})")
    if value < low or (high is not None and value > high):
        raise SpecError(key, f"must be between {low} and {high if high is not None else 'any'} (got {value})")
    return value


def _abs_path(table: Mapping[str, Any], key: str) -> Path:
    raw = _str(table, key)
    path = PurePosixPath(raw)
    if not path.is_absolute():
        raise SpecError(key, f"must be an absolute path (got {raw!r})")
    if ".." in path.parts or "\x00" in raw:
        raise SpecError(key, f"must not contain '..' or NUL (got {raw!r})")
    return Path(path)


def _refuse_unknown(table: Mapping[str, Any], allowed: frozenset[str], table_name: str) -> None:
    if not isinstance(table, Mapping):
        raise SpecError(table_name, "must be a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SpecError(unknown[0], f"unknown key in [[{table_name}]] (allowed: {', '.join(sorted(allowed))})")


def _serves(pools: tuple[str, ...], repos: tuple[str, ...], pool: str, repo: str | None) -> bool:
    # repository names compare case-insensitively, as GitHub treats them; an empty `repos` means every repository
    if pool not in pools:
        return False
    return not repos or (repo is not None and repo.lower() in {r.lower() for r in repos})


@dataclass(frozen=True)
class CacheSpec:
    """An artifact to keep on a runner host: downloaded, verified and unpacked into `dest`."""

    name: str
    url: str
    sha256: str
    dest: Path
    unpack: Unpack
    pools: tuple[str, ...]
    repos: tuple[str, ...] = ()
    size: int | None = None
    quota_bytes: int | None = None
    ttl_seconds: int = DEFAULT_TTL_SECONDS

    KEYS = frozenset(
        {"name", "url", "sha256", "dest", "unpack", "pools", "repos", "size", "quota_bytes", "ttl_seconds"}
    )

    def serves(self, pool: str, repo: str | None = None) -> bool:
        """Should a job queued for `pool` (in `repo`, when known) warm this cache?"""
        return _serves(self.pools, self.repos, pool, repo)

    @property
    def root(self) -> Path:
        """The cache root shared by sibling artifacts: manifests, temp files and the quota live here."""
        return self.dest.parent

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> CacheSpec:
        _refuse_unknown(table, cls.KEYS, "cache")
        name = safe_name(table.get("name"))
        url = _str(table, "url")
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise SpecError("url", f"must be an http(s) URL with a host (got {url!r:.120})")
        if not transport_ok(url):
            raise SpecError("url", f"must be https:// (plain http only to a loopback host; got {url!r:.120})")
        if any(ch.isspace() or ord(ch) < 32 for ch in url):
            raise SpecError("url", "must not contain whitespace or control characters")
        sha = _str(table, "sha256")
        if not _SHA256.fullmatch(sha):
            raise SpecError("sha256", "must be 64 lowercase hex digits")
        dest = _abs_path(table, "dest")
        if dest.parent == dest or dest.parent == Path("/"):
            raise SpecError("dest", "must sit inside a cache directory (its parent holds manifests and temp files)")
        unpack = table.get("unpack", "none")
        if unpack not in UNPACK_KINDS:
            raise SpecError("unpack", f"must be one of {', '.join(UNPACK_KINDS)} (got {unpack!r:.40})")
        size = _int(table, "size", None, low=1)
        quota = _int(table, "quota_bytes", None, low=1)
        if quota is not None and size is not None and size > quota:
            raise SpecError("quota_bytes", f"is smaller than the artifact's own size ({size})")
        ttl = _int(table, "ttl_seconds", DEFAULT_TTL_SECONDS, low=0, high=MAX_TTL_SECONDS)
        return cls(
            name=name,
            url=url,
            sha256=sha,
            dest=dest,
            unpack=cast(Unpack, unpack),
            pools=_names(table, "pools", required=True),
            repos=_names(table, "repos", required=False, check=safe_repo),
            size=size,
            quota_bytes=quota,
            ttl_seconds=ttl if ttl is not None else DEFAULT_TTL_SECONDS,
        )


@dataclass(frozen=True)
class CommandSpec:
    """A fixed command from the policy (never built from a payload), e.g. `cargo fetch --locked` in a mirror."""

    name: str
    argv: tuple[str, ...]
    cwd: Path
    timeout_seconds: float
    env_allow: tuple[str, ...]
    pools: tuple[str, ...]
    repos: tuple[str, ...] = ()

    KEYS = frozenset({"name", "argv", "cwd", "timeout_seconds", "env_allow", "pools", "repos"})

    def serves(self, pool: str, repo: str | None = None) -> bool:
        """Should a job queued for `pool` (in `repo`, when known) run this command?"""
        return _serves(self.pools, self.repos, pool, repo)

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> CommandSpec:
        _refuse_unknown(table, cls.KEYS, "command")
        name = safe_name(table.get("name"))
        argv = table.get("argv")
        # a string here would be a shell line; only a list keeps every argument one argv element
        if not isinstance(argv, list) or not argv or not all(isinstance(arg, str) for arg in argv):
            raise SpecError("argv", "must be a non-empty list of strings (never a shell string)")
        if not argv[0] or any("\x00" in arg for arg in argv):
            raise SpecError("argv", "must not contain an empty program name or NUL characters")
        timeout = table.get("timeout_seconds")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_COMMAND_SECONDS:
            raise SpecError("timeout_seconds", f"is required, a number in (0, {MAX_COMMAND_SECONDS:.0f}]")
        env_allow = table.get("env_allow", [])
        if not isinstance(env_allow, list) or not all(
            isinstance(item, str) and _ENV_NAME.fullmatch(item) for item in env_allow
        ):
            raise SpecError("env_allow", "must be a list of environment variable names ([A-Za-z_][A-Za-z0-9_]*)")
        return cls(
            name=name,
            argv=tuple(argv),
            cwd=_abs_path(table, "cwd"),
            timeout_seconds=float(timeout),
            env_allow=tuple(env_allow),
            pools=_names(table, "pools", required=True),
            repos=_names(table, "repos", required=False, check=safe_repo),
        )


@dataclass(frozen=True)
class HostSpec:
    """A runner host the policy declares: where its runner lives, its service unit, when and how to clean up."""

    name: str
    runner_dir: Path
    service: str | None = None
    cleanup_at: float = 0.80
    keep_days: int = 7
    dry_run: bool = False

    KEYS = frozenset({"name", "runner_dir", "service", "cleanup_at", "keep_days", "dry_run"})

    @property
    def work_dir(self) -> Path:
        """The runner's work directory (`_work`): workspaces, `_temp`, `_tool`, `_actions`."""
        return self.runner_dir / "_work"

    @property
    def diag_dir(self) -> Path:
        """Where the runner writes its own `Runner_*.log` files."""
        return self.runner_dir / "_diag"

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> HostSpec:
        _refuse_unknown(table, cls.KEYS, "host")
        name = safe_name(table.get("name"))
        runner_dir = _abs_path(table, "runner_dir")
        if runner_dir == Path("/"):
            raise SpecError("runner_dir", "must be the runner's own directory, not /")
        service = table.get("service")
        if service is not None and (not isinstance(service, str) or not UNIT_NAME.fullmatch(service)):
            raise SpecError("service", f"must be a systemd unit name ending in .service (got {service!r:.80})")
        cleanup_at = table.get("cleanup_at", 0.80)
        if isinstance(cleanup_at, bool) or not isinstance(cleanup_at, int | float) or not 0 < cleanup_at <= 1:
            raise SpecError("cleanup_at", f"must be a fraction in (0, 1] (got {cleanup_at!r:.40})")
        keep_days = _int(table, "keep_days", 7, low=0, high=3650)
        dry_run = table.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise SpecError("dry_run", f"must be true or false (got {dry_run!r:.40})")
        return cls(name=name, runner_dir=runner_dir, service=service, cleanup_at=float(cleanup_at),
                   keep_days=keep_days if keep_days is not None else 7, dry_run=dry_run)


def check_unique(caches: Sequence[CacheSpec]) -> None:
    """For the policy loader: names unique, and no dest equal to or inside another (they would replace each other)."""
    seen: dict[str, CacheSpec] = {}
    for spec in caches:
        if spec.name in seen:
            raise SpecError("name", f"cache {spec.name!r} is defined twice")
        for other in seen.values():
            if spec.dest == other.dest or spec.dest.is_relative_to(other.dest) or other.dest.is_relative_to(spec.dest):
                raise SpecError("dest", f"caches {other.name!r} and {spec.name!r} overlap ({other.dest}, {spec.dest})")
        seen[spec.name] = spec
