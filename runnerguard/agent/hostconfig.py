"""What this host may do: the caches, commands and [[host]] table, from /agent/v1/config or a local policy file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from config.policy import Policy
from runnerguard.prewarm.specs import CacheSpec, CommandSpec, HostSpec, SpecError, check_unique

DEFAULT_REPORT_EVERY = 30.0


@dataclass(frozen=True)
class HostPolicy:
    """The agent's whole view of the policy; work naming anything outside it is refused by name."""

    host: HostSpec | None
    caches: Mapping[str, CacheSpec] = field(default_factory=dict)
    commands: Mapping[str, CommandSpec] = field(default_factory=dict)
    report_every: float = DEFAULT_REPORT_EVERY
    source: Literal["server", "local", "none"] = "none"
    server_version: str | None = None


def _list(value: object, key: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise SpecError(key, "must be a list of objects")
    return value


def from_server(answer: Mapping[str, Any], host_name: str) -> HostPolicy:
    """Validate /agent/v1/config with the policy's own spec parsers; raises SpecError naming the first bad key."""
    # keys a newer web tier may add are ignored here (what they would mean is not known); the tables below are
    # parsed strictly, with the policy's own parsers
    raw_host = answer.get("host")
    if raw_host is not None and not isinstance(raw_host, dict):
        raise SpecError("host", "must be an object")
    if raw_host is not None and raw_host.get("name") != host_name:
        raise SpecError("host.name", f"is {str(raw_host.get('name'))[:80]!r}, not this host ({host_name!r})")
    # a host the policy names in a pool but declares no [[host]] table for comes with runner_dir null: no health
    # from the runner's logs and no cleanup, but its caches and commands all the same
    host = HostSpec.from_mapping(raw_host) if raw_host is not None and raw_host.get("runner_dir") is not None else None
    caches = [CacheSpec.from_mapping(t) for t in _list(answer.get("caches", []), "caches")]
    check_unique(caches)
    commands = [CommandSpec.from_mapping(t) for t in _list(answer.get("commands", []), "commands")]
    if len({c.name for c in commands}) != len(commands):
        raise SpecError("commands", "names a command twice")
    every = answer.get("report_every", DEFAULT_REPORT_EVERY)
    if isinstance(every, bool) or not isinstance(every, int | float) or not 5 <= every <= 3600:
        raise SpecError("report_every", "must be a number of seconds in [5, 3600]")
    version = answer.get("server_version")
    return HostPolicy(host, {c.name: c for c in caches}, {c.name: c for c in commands}, float(every), "server",
                      version if isinstance(version, str) else None)


def from_local(policy: Policy, host_name: str, *, report_every: float = DEFAULT_REPORT_EVERY) -> HostPolicy:
    """The local policy file's view: the caches and commands of the pools that list this host."""
    pools = [p.name for p in policy.pools if host_name in p.hosts]
    caches = [c for c in policy.caches if any(pool in c.pools for pool in pools)]
    commands = [c for c in policy.commands if any(pool in c.pools for pool in pools)]
    declared = policy.host(host_name)
    # read back through the agent's own parser, whatever class the policy loader keeps its [[host]] tables in
    host = HostSpec.from_mapping({key: getattr(declared, key) if key != "runner_dir" else str(declared.runner_dir)
                                  for key in HostSpec.KEYS}) if declared is not None else None
    return HostPolicy(host, {c.name: c for c in caches}, {c.name: c for c in commands}, report_every, "local")


def effective(local: HostPolicy | None, server: HostPolicy | None) -> HostPolicy:
    """A local policy file wins over what the server sends (the server only sets the report interval then)."""
    if local is not None:
        every = server.report_every if server is not None else local.report_every
        host = local.host or (server.host if server is not None else None)
        return HostPolicy(host, local.caches, local.commands, every, "local",
                          server.server_version if server is not None else None)
    return server or HostPolicy(None)
