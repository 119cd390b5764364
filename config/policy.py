"""The fleet policy (one TOML file): pools, rollback triggers and their thresholds, caches and commands to pre-warm."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config import scorecard_policy
from config.durations import parse_duration
from config.errors import ConfigError
from config.notify_policy import NotifierSpec, parse_notifiers
from runnerguard.domain.hosts import valid_name as valid_host_name
from runnerguard.domain.pools import DEFAULT_FALLBACK, DEFAULT_POOL, Pool
from runnerguard.domain.restore import AUTO, DEFAULT_RESTORE_AFTER, MANUAL, RESTORE_MODES
from runnerguard.domain.rules import CountingRule
from runnerguard.domain.scorecard import Targets
from runnerguard.prewarm import CacheSpec, CommandSpec, SpecError, check_unique

NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
LABEL_RE = re.compile(r"^[^\s,\[\]{}]{1,100}$")
# startup_failure is a run's conclusion, never a job's (issue #14): listing it matched nothing.
DEFAULT_FAILED_CONCLUSIONS = ("failure", "timed_out")
FAILURE_CAUSES = ("runner", "code", "timeout", "unknown")
DEFAULT_COUNTED_CAUSES = ("runner", "timeout", "unknown")
WATCHDOG_KEYS = ("max_run", "force_after", "retry_runner_failures")


@dataclass(frozen=True)
class FailureRateRule:
    """`failure_rate` trigger: failed / finished jobs of a pool over a window, above a threshold."""

    window_seconds: int = 24 * 3600
    threshold: float = 0.5
    min_jobs: int = 6
    failed_conclusions: tuple[str, ...] = DEFAULT_FAILED_CONCLUSIONS
    # cancelled and skipped jobs count neither as failed nor as finished unless listed here.
    ignored_conclusions: tuple[str, ...] = ("cancelled", "skipped")
    # Which failure causes count as failed (a failure proven to be the code's never moves a pool), and whether jobs
    # of runs from forks count at all. Fleet-wide only: the pool indexes are kept with one rule.
    counted_causes: tuple[str, ...] = DEFAULT_COUNTED_CAUSES
    count_forks: bool = False

    @property
    def counting(self) -> CountingRule:
        return CountingRule(failed=frozenset(self.failed_conclusions), ignored=frozenset(self.ignored_conclusions),
                            counted=frozenset(self.counted_causes), count_forks=self.count_forks)


@dataclass(frozen=True)
class StuckQueueRule:
    """`stuck_queue` trigger: N jobs queued longer than T while nothing of the pool started in T."""

    min_jobs: int = 5
    after_seconds: int = 2 * 3600


@dataclass(frozen=True)
class HostDownRule:
    """`host_down` trigger: every host of a pool down (or its runner offline) while a job waited longer than T."""

    after_seconds: int = 15 * 60


@dataclass(frozen=True)
class HostSpec:
    """A runner host the policy declares (`[[host]]`): where its runner lives and when its agent cleans up."""

    name: str
    runner_dir: str
    service: str | None = None
    cleanup_at: float = 0.80
    keep_days: int = 7
    dry_run: bool = False

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "runner_dir": self.runner_dir, "service": self.service,
                "cleanup_at": self.cleanup_at, "keep_days": self.keep_days, "dry_run": self.dry_run}


@dataclass(frozen=True)
class RollbackPolicy:
    dry_run: bool = False
    cooldown_seconds: int = 24 * 3600
    failure_rate: FailureRateRule = FailureRateRule()
    stuck_queue: StuckQueueRule = StuckQueueRule()
    host_down: HostDownRule = HostDownRule()


@dataclass(frozen=True)
class Policy:
    """A validated fleet policy. `Policy()` is the no-file default: the seed's own rule."""

    pools: tuple[Pool, ...] = ()
    rollback: RollbackPolicy = RollbackPolicy()
    caches: tuple[CacheSpec, ...] = field(default=())
    commands: tuple[CommandSpec, ...] = field(default=())
    hosts: tuple[HostSpec, ...] = field(default=())

    def host(self, name: str) -> HostSpec | None:
        """A host the policy declares with `[[host]]` (None for a host only named in a pool's `hosts`)."""
        return next((h for h in self.hosts if h.name == name), None)

    def host_names(self) -> list[str]:
        """Every host the policy knows of: declared with `[[host]]` or named by a pool, sorted."""
        return sorted({h.name for h in self.hosts} | {h for p in self.pools for h in p.hosts})

    def host_pools(self, name: str) -> list[str]:
        """The pools a host serves (a pool's `hosts` names it)."""
        return [p.name for p in self.pools if name in p.hosts]
    notifiers: tuple[NotifierSpec, ...] = field(default=())  # `[[notify]]`: config/notify_policy.py
    scorecard: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)  # checked [scorecard]

    def pool(self, name: str) -> Pool | None:
        """A pool the policy declares by name (None for the implicit default pool; see `find_pool`)."""
        return next((p for p in self.pools if p.name == name), None)

    @property
    def all_pools(self) -> tuple[Pool, ...]:
        """The pools triggers, the API and the CLI look at: the declared ones, else the one default pool."""
        return self.pools or (DEFAULT_POOL,)

    def find_pool(self, name: str) -> Pool | None:
        """A pool by name among `all_pools` (the default pool included when no pool is declared)."""
        return next((p for p in self.all_pools if p.name == name), None)

    def prewarm_specs_for(self, pools: list[str], repo: str | None) -> tuple[list[CacheSpec], list[CommandSpec]]:
        """The caches and commands that serve any of `pools` (and `repo`, where a spec names repos)."""
        caches = [c for c in self.caches if any(c.serves(pool, repo) for pool in pools)]
        commands = [c for c in self.commands if any(c.serves(pool, repo) for pool in pools)]
        return caches, commands

    def targets_for(self, pool_name: str) -> Targets:
        """The pool's scorecard targets: its own `scorecard = {...}`, then `[scorecard]`, then the seed's; peak jobs
        at once defaults to the pool's runner count (`runners = N`, else its hosts, else one)."""
        pool = self.find_pool(pool_name)
        return scorecard_policy.targets(self.scorecard, pool.scorecard if pool else {},
                                        runners=pool.runner_count if pool else 1)

    def failure_rate_for(self, pool_name: str) -> FailureRateRule:
        """The pool's own overrides (`rollback = {threshold = 0.6}`) on top of the defaults."""
        base = self.rollback.failure_rate
        pool = self.pool(pool_name)
        if pool is None or not pool.rollback:
            return base
        return _failure_rate(dict(pool.rollback), f"pool.{pool_name}.rollback", base)


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _table(value: object, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a table, got {type(value).__name__}")
    return value


def _name(value: object, key: str) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ConfigError(key, f"must be 1-64 characters of letters, digits, '.', '_' or '-', got {value!r}")
    return value


def _str_list(
    value: object, key: str, *, pattern: re.Pattern[str] = LABEL_RE, allow_empty: bool = False
) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and pattern.fullmatch(v) for v in value):
        raise ConfigError(key, f"must be a list of strings without spaces or commas, got {value!r}")
    if not value and not allow_empty:
        raise ConfigError(key, "must not be empty")
    return tuple(value)


def _fraction(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ConfigError(key, f"must be a number between 0 and 1 (exclusive), got {value!r}")
    return float(value)


def _positive_int(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, f"must be a whole number of at least 1, got {value!r}")
    return value


def _failure_rate(table: dict[str, Any], where: str, base: FailureRateRule) -> FailureRateRule:
    _check_keys(table, {"window", "threshold", "min_jobs", "failed", "ignored", "count", "count_forks"}, where)
    counted = base.counted_causes
    if "count" in table:
        counted = _str_list(table["count"], f"{where}.count", allow_empty=True)
        wrong = sorted(set(counted) - set(FAILURE_CAUSES))
        if wrong:
            raise ConfigError(f"{where}.count", f"unknown cause {wrong[0]!r} (one of {', '.join(FAILURE_CAUSES)})")
    count_forks = table.get("count_forks", base.count_forks)
    if not isinstance(count_forks, bool):
        raise ConfigError(f"{where}.count_forks", f"must be true or false, got {count_forks!r}")
    return FailureRateRule(
        counted_causes=counted, count_forks=count_forks,
        window_seconds=parse_duration(table["window"], f"{where}.window") if "window" in table else base.window_seconds,
        threshold=_fraction(table["threshold"], f"{where}.threshold") if "threshold" in table else base.threshold,
        min_jobs=_positive_int(table["min_jobs"], f"{where}.min_jobs") if "min_jobs" in table else base.min_jobs,
        failed_conclusions=_str_list(table["failed"], f"{where}.failed") if "failed" in table
        else base.failed_conclusions,
        ignored_conclusions=_str_list(table["ignored"], f"{where}.ignored", allow_empty=True) if "ignored" in table
        else base.ignored_conclusions,
    )


def _pool(table: dict[str, Any], index: int, defaults: FailureRateRule) -> Pool:
    where = f"pool[{index}]"
    _check_keys(table, {"name", "labels", "hosts", "fallback", "rollback", "runners", "scorecard", "restore",
                        "restore_after", *WATCHDOG_KEYS}, where)
    if "name" not in table:
        raise ConfigError(f"{where}.name", "is required")
    name = _name(table["name"], f"{where}.name")
    where = f"pool.{name}"
    if "labels" not in table:
        raise ConfigError(f"{where}.labels", "is required: the labels this pool's runners carry")
    labels = _str_list(table["labels"], f"{where}.labels")
    hosts = _str_list(table.get("hosts", []), f"{where}.hosts", pattern=NAME_RE, allow_empty=True)
    fallback = table.get("fallback", DEFAULT_FALLBACK)
    if not isinstance(fallback, str) or not LABEL_RE.fullmatch(fallback):
        raise ConfigError(f"{where}.fallback", f"must be one runner label such as 'ubuntu-latest', got {fallback!r}")
    overrides = _table(table.get("rollback", {}), f"{where}.rollback")
    _failure_rate(dict(overrides), f"{where}.rollback", defaults)  # validate now, apply on use
    for fleet_wide in ("count", "count_forks"):
        if fleet_wide in overrides:
            raise ConfigError(f"{where}.rollback.{fleet_wide}", "is fleet-wide: set it in [rollback.failure_rate]")
    runners = _positive_int(table["runners"], f"{where}.runners") if "runners" in table else None
    targets = _scorecard(table.get("scorecard", {}), f"{where}.scorecard")
    restore = table.get("restore", MANUAL)
    if restore not in RESTORE_MODES:
        raise ConfigError(f"{where}.restore", f"must be one of {', '.join(RESTORE_MODES)}, got {str(restore)[:40]!r}")
    restore_after = (parse_duration(table["restore_after"], f"{where}.restore_after") if "restore_after" in table
                     else DEFAULT_RESTORE_AFTER)
    if restore == AUTO and not hosts:
        raise ConfigError(f"{where}.restore", "\"auto\" needs the pool's hosts: their reports say when it is well")
    return Pool(name=name, labels=labels, hosts=hosts, fallback=fallback, rollback=dict(overrides), runners=runners,
                scorecard=targets, restore=restore, restore_after_seconds=restore_after, **_watchdog(table, where))


def _scorecard(value: object, where: str) -> dict[str, Any]:
    return scorecard_policy.check(_table(value, where), where, duration=parse_duration, fraction=_fraction,
                                  count=_positive_int)


def _watchdog(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The pool's watchdog keys: `max_run` (none by default), `force_after` ("5m"), `retry_runner_failures` (1)."""
    max_run = parse_duration(table["max_run"], f"{where}.max_run") if "max_run" in table else None
    force_after = parse_duration(table.get("force_after", "5m"), f"{where}.force_after")
    retry = table.get("retry_runner_failures", 1)
    if isinstance(retry, bool) or retry not in (0, 1):
        # one more try at most: a second rerun of a runner-lost job would only hide a broken runner
        raise ConfigError(f"{where}.retry_runner_failures", f"must be 0 (off) or 1, got {retry!r}")
    return {"max_run_seconds": max_run, "force_after_seconds": force_after, "retry_runner_failures": retry}


def parse_policy(data: Mapping[str, Any]) -> Policy:
    """Validate a parsed TOML document; raises ConfigError naming the first bad key."""
    _check_keys(data, {"pool", "rollback", "cache", "command", "host", "scorecard", "notify"}, "policy")
    rollback_table = _table(data.get("rollback", {}), "rollback")
    _check_keys(rollback_table, {"dry_run", "cooldown", "failure_rate", "stuck_queue", "host_down"}, "rollback")
    dry_run = rollback_table.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ConfigError("rollback.dry_run", f"must be true or false, got {dry_run!r}")
    failure_rate = _failure_rate(
        _table(rollback_table.get("failure_rate", {}), "rollback.failure_rate"), "rollback.failure_rate",
        FailureRateRule(),
    )
    stuck_table = _table(rollback_table.get("stuck_queue", {}), "rollback.stuck_queue")
    _check_keys(stuck_table, {"min_jobs", "after"}, "rollback.stuck_queue")
    stuck = StuckQueueRule(
        min_jobs=_positive_int(stuck_table.get("min_jobs", 5), "rollback.stuck_queue.min_jobs"),
        after_seconds=parse_duration(stuck_table.get("after", "2h"), "rollback.stuck_queue.after"),
    )
    host_down_table = _table(rollback_table.get("host_down", {}), "rollback.host_down")
    _check_keys(host_down_table, {"after"}, "rollback.host_down")
    host_down = HostDownRule(after_seconds=parse_duration(host_down_table.get("after", "15m"),
                                                          "rollback.host_down.after"))
    cooldown = parse_duration(rollback_table.get("cooldown", "24h"), "rollback.cooldown")
    pool_tables = data.get("pool", [])
    if not isinstance(pool_tables, list):
        raise ConfigError("pool", "must be an array of tables ([[pool]])")
    pools = tuple(_pool(_table(t, f"pool[{i}]"), i, failure_rate) for i, t in enumerate(pool_tables))
    names = [p.name for p in pools]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ConfigError(f"pool.{duplicate}", "is declared twice")
    caches = tuple(_spec(CacheSpec, t, f"cache[{i}]") for i, t in enumerate(_tables(data.get("cache", []), "cache")))
    commands = tuple(_spec(CommandSpec, t, f"command[{i}]")
                     for i, t in enumerate(_tables(data.get("command", []), "command")))
    try:
        check_unique(caches)
    except SpecError as exc:
        raise ConfigError(f"cache.{exc.key}", exc.why) from None
    for kind, specs in (("cache", caches), ("command", commands)):
        for spec in specs:
            for pool_name in spec.pools:
                if pool_name not in names:
                    raise ConfigError(f"{kind}.{spec.name}.pools", f"names pool {pool_name!r}, which is not declared")
    hosts = tuple(_host(t, i) for i, t in enumerate(_tables(data.get("host", []), "host")))
    host_names = [h.name for h in hosts]
    duplicate = next((n for n in host_names if host_names.count(n) > 1), None)
    if duplicate:
        raise ConfigError(f"host.{duplicate}", "is declared twice")
    return Policy(
        pools=pools,
        rollback=RollbackPolicy(dry_run=dry_run, cooldown_seconds=cooldown, failure_rate=failure_rate,
                                stuck_queue=stuck, host_down=host_down),
        caches=caches,
        commands=commands,
        hosts=hosts,
        notifiers=parse_notifiers(data.get("notify", [])),
        scorecard=_scorecard(data.get("scorecard", {}), "scorecard"),
    )


HOST_KEYS = {"name", "runner_dir", "service", "cleanup_at", "keep_days", "dry_run"}
SERVICE_RE = re.compile(r"^[A-Za-z0-9@._:-]{1,200}\.service$")


def _host(table: dict[str, Any], index: int) -> HostSpec:
    where = f"host[{index}]"
    _check_keys(table, HOST_KEYS, where)
    if "name" not in table:
        raise ConfigError(f"{where}.name", "is required")
    name = _name(table["name"], f"{where}.name")
    if not valid_host_name(name):  # `$` in NAME_RE lets a trailing newline through; a host name is a fullmatch
        raise ConfigError(f"{where}.name", f"must be 1-64 characters of letters, digits, '.', '_' or '-', got {name!r}")
    where = f"host.{name}"
    runner_dir = table.get("runner_dir")
    if not isinstance(runner_dir, str) or not runner_dir.startswith("/") or "\x00" in runner_dir \
            or ".." in runner_dir.split("/"):
        raise ConfigError(f"{where}.runner_dir", f"is required: an absolute path without '..', got {runner_dir!r}")
    service = table.get("service")
    if service is not None and (not isinstance(service, str) or not SERVICE_RE.match(service)):
        raise ConfigError(f"{where}.service", f"must be a systemd unit name ending in .service, got {service!r}")
    cleanup_at = _fraction(table["cleanup_at"], f"{where}.cleanup_at") if "cleanup_at" in table else 0.80
    keep_days = _positive_int(table.get("keep_days", 7), f"{where}.keep_days")
    dry_run = table.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ConfigError(f"{where}.dry_run", f"must be true or false, got {dry_run!r}")
    return HostSpec(name=name, runner_dir=runner_dir.rstrip("/") or "/", service=service, cleanup_at=cleanup_at,
                    keep_days=keep_days, dry_run=dry_run)


def _spec(kind: type[CacheSpec] | type[CommandSpec], table: dict[str, Any], where: str) -> Any:
    try:
        return kind.from_mapping(table)
    except SpecError as exc:
        raise ConfigError(f"{where}.{exc.key}", exc.why) from None


def _tables(value: object, key: str) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list):
        raise ConfigError(key, f"must be an array of tables ([[{key}]])")
    return tuple(_table(t, f"{key}[{i}]") for i, t in enumerate(value))


def load_policy(path: Path | None) -> Policy:
    """Read and validate the policy file; no path means the seed's defaults."""
    if path is None:
        return Policy()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError("RUNNERGUARD_POLICY", f"cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("RUNNERGUARD_POLICY", f"{path} is not valid TOML: {exc}") from None
    return parse_policy(data)
