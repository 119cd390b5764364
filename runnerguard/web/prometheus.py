"""Render runnerguard's metrics in the Prometheus text format (0.0.4): data in, text out, no I/O."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runnerguard.store.metrics import DURATION_BUCKETS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREWARM_RESULTS = ("hits", "misses", "errors", "skipped")  # stats fields -> result label (hit, miss, error, skipped)
RESULT_LABEL = {"hits": "hit", "misses": "miss", "errors": "error", "skipped": "skipped"}

# name -> (type, help). Counters and histograms come from the Redis counters hash; gauges are computed per scrape.
FAMILIES: dict[str, tuple[str, str]] = {
    "runnerguard_webhook_deliveries_total": ("counter", "Webhook deliveries received, by event and outcome."),
    "runnerguard_jobs_total": ("counter", "Workflow jobs finished, by pool, repository and conclusion."),
    "runnerguard_notify_total": ("counter", "Notifications by notifier and result: sent, suppressed (cooldown) or "
                                 "error (one per failed attempt)."),
    "runnerguard_job_queue_seconds": ("histogram", "Seconds a job waited in the queue before a runner took it."),
    "runnerguard_job_run_seconds": ("histogram", "Seconds a job ran, from start to completion."),
    "runnerguard_pool_failure_rate": ("gauge", "Failed over finished jobs of the pool in the last 24 hours."),
    "runnerguard_rollback_state": ("gauge", "1 for the current rollback state of a pool in a repository, else 0."),
    "runnerguard_prewarm_total": ("counter", "Pre-warms of a cache on a host, by result."),
    "runnerguard_cache_hit_rate": ("gauge", "Pre-warm hits over all pre-warms of a cache on a host."),
    "runnerguard_queue_depth": ("gauge", "Tasks waiting in an RQ queue."),
    "runnerguard_failed_tasks": ("gauge", "Tasks in an RQ queue's failed registry."),
    "runnerguard_host_up": ("gauge", "1 while the runner host's agent reports (a report within 2 minutes), else 0."),
    "runnerguard_host_disk_used_ratio": ("gauge", "Used over total of a filesystem the host's agent reports."),
    "runnerguard_host_runner": ("gauge", "1 for the runner listener's current state on the host, else 0."),
    "runnerguard_watchdog_total": ("counter", "The watchdog's cancels, force-cancels and re-runs, by pool and action."),
}
HOST_RUNNER_STATES = ("listening", "busy", "offline", "unknown")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Bounds every label set shows even before an observation reached them (written as metrics.observe_on writes them).
HISTOGRAM_BOUNDS = {name: tuple(str(b) for b in DURATION_BUCKETS)
                    for name in ("runnerguard_job_queue_seconds", "runnerguard_job_run_seconds")}
SERIES_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')
UNESCAPE_RE = re.compile(r"\\(.)")

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Scrape:
    """Everything one scrape shows: the stored counters plus the gauges computed now."""

    counters: Mapping[str, float] = field(default_factory=dict)
    pool_failure_rates: Mapping[str, float | None] = field(default_factory=dict)
    rollback_states: Sequence[tuple[str, str, str]] = ()  # (pool, repo, current state)
    rollback_state_names: Sequence[str] = ()
    prewarm_rows: Sequence[Mapping[str, object]] = ()  # prewarm.stats.cache_rows()
    queues: Sequence[tuple[str, int, int]] = ()  # (queue, depth, failed)
    hosts: Sequence[Mapping[str, Any]] = ()  # HostStatus.public() rows


def parse_series(series: str) -> tuple[str, Labels]:
    """`name{a="x",b="y"}` as metrics.series() writes it -> (name, sorted labels); ValueError if malformed."""
    match = SERIES_RE.fullmatch(series)
    if not match:
        raise ValueError(f"not a series: {series[:80]!r}")
    name, inner = match.group(1), match.group(2) or ""
    labels = [(k, UNESCAPE_RE.sub(_unescape_char, v)) for k, v in LABEL_RE.findall(inner)]
    return name, tuple(sorted(labels))


def _unescape_char(match: re.Match[str]) -> str:
    return "\n" if match.group(1) == "n" else match.group(1)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels)
    return f"{{{inner}}}" if inner else ""


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)


def _le_key(le: str) -> float:
    return math.inf if le == "+Inf" else float(le)


def _header(name: str, kind: str, text: str) -> list[str]:
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


def _histogram(name: str, text: str, rows: Mapping[str, dict[Labels, float]]) -> list[str]:
    """Buckets in ascending `le` order per label set; a bound missing for one label set is 0 (buckets are
    cumulative, so no observation reached it), so every label set shows the same bounds."""
    bounds: set[str] = set(HISTOGRAM_BOUNDS.get(name, ()))
    groups: dict[Labels, dict[str, float]] = {}
    for labels, value in rows.get("_bucket", {}).items():
        plain = tuple(kv for kv in labels if kv[0] != "le")
        le = dict(labels).get("le", "+Inf")
        bounds.add(le)
        groups.setdefault(plain, {})[le] = value
    for suffix in ("_sum", "_count"):
        for labels in rows.get(suffix, {}):
            groups.setdefault(labels, {})
    bounds.add("+Inf")
    ordered = sorted(bounds, key=_le_key)
    lines = _header(name, "histogram", text)
    for labels in sorted(groups):
        count = rows.get("_count", {}).get(labels, 0.0)
        for le in ordered:
            value = groups[labels].get(le, count if le == "+Inf" else 0.0)
            lines.append(f"{name}_bucket{_labels((*labels, ('le', le)))} {_number(value)}")
        lines.append(f"{name}_sum{_labels(labels)} {_number(rows.get('_sum', {}).get(labels, 0.0))}")
        lines.append(f"{name}_count{_labels(labels)} {_number(count)}")
    return lines


Parts = dict[str, dict[str, dict[Labels, float]]]


def _stored(counters: Mapping[str, float]) -> tuple[dict[str, dict[Labels, float]], Parts]:
    """Split the counters hash into plain series and histogram parts, skipping anything malformed."""
    plain: dict[str, dict[Labels, float]] = {}
    histograms: dict[str, dict[str, dict[Labels, float]]] = {}
    for series, value in counters.items():
        try:
            name, labels = parse_series(series)
        except ValueError:
            continue  # one bad field must not take the whole scrape down
        for suffix in HISTOGRAM_SUFFIXES:
            base = name[: -len(suffix)]
            if name.endswith(suffix) and FAMILIES.get(base, ("",))[0] == "histogram":
                histograms.setdefault(base, {}).setdefault(suffix, {})[labels] = value
                break
        else:
            plain.setdefault(name, {})[labels] = value
    return plain, histograms


def _family(name: str, samples: Mapping[Labels, float], kind: str | None = None) -> list[str]:
    known_kind, text = FAMILIES.get(name, ("untyped", f"{name} (kept in Redis)."))
    if kind is None:
        kind = known_kind
        if name not in FAMILIES and name.endswith("_total"):
            kind = "counter"
    lines = _header(name, kind, text)
    lines += [f"{name}{_labels(labels)} {_number(value)}" for labels, value in sorted(samples.items())]
    return lines


def _host_families(hosts: Sequence[Mapping[str, Any]]) -> list[str]:
    up: dict[Labels, float] = {}
    disk: dict[Labels, float] = {}
    runner: dict[Labels, float] = {}
    for row in hosts:
        host = (("host", str(row["name"])),)
        up[host] = 1.0 if row.get("state") == "up" else 0.0
        for path, usage in sorted((row.get("disk") or {}).items()):
            if usage.get("used_ratio") is not None:
                disk[(*host, ("path", str(path)))] = float(usage["used_ratio"])
        current = str(row.get("runner") or "unknown")
        for name in dict.fromkeys((*HOST_RUNNER_STATES, current)):
            runner[(*host, ("state", name))] = 1.0 if name == current else 0.0
    return (_family("runnerguard_host_up", up) + _family("runnerguard_host_disk_used_ratio", disk)
            + _family("runnerguard_host_runner", runner))


def render(scrape: Scrape) -> str:
    """The whole exposition, families in a stable order, ending with a newline."""
    plain, histograms = _stored(scrape.counters)
    out: list[str] = []
    for name in ("runnerguard_webhook_deliveries_total", "runnerguard_jobs_total", "runnerguard_watchdog_total",
                 "runnerguard_notify_total"):
        out += _family(name, plain.pop(name, {}))
    for name in ("runnerguard_job_queue_seconds", "runnerguard_job_run_seconds"):
        out += _histogram(name, FAMILIES[name][1], histograms.pop(name, {}))
    for name in sorted(histograms):
        out += _histogram(name, FAMILIES[name][1], histograms[name])
    for name in sorted(plain):
        if name in FAMILIES:
            continue  # a gauge name left in the hash by mistake would duplicate a family below
        out += _family(name, plain[name])
    out += _family("runnerguard_pool_failure_rate", {
        (("pool", pool),): rate for pool, rate in sorted(scrape.pool_failure_rates.items()) if rate is not None
    })
    states: dict[Labels, float] = {}
    for pool, repo, current in scrape.rollback_states:
        for name in dict.fromkeys((*scrape.rollback_state_names, current)):
            states[(("pool", pool), ("repo", repo), ("state", name))] = 1.0 if name == current else 0.0
    out += _family("runnerguard_rollback_state", states)
    prewarm: dict[Labels, float] = {}
    hit_rates: dict[Labels, float] = {}
    for row in scrape.prewarm_rows:
        where = (("cache", str(row["name"])), ("host", str(row["host"])))
        for stat in PREWARM_RESULTS:
            prewarm[(*where, ("result", RESULT_LABEL[stat]))] = float(row.get(stat) or 0)  # type: ignore[arg-type]
        if row.get("hit_rate") is not None:
            hit_rates[where] = float(row["hit_rate"])  # type: ignore[arg-type]
    out += _family("runnerguard_prewarm_total", prewarm)
    out += _family("runnerguard_cache_hit_rate", hit_rates)
    out += _family("runnerguard_queue_depth", {(("queue", q),): float(d) for q, d, _ in scrape.queues})
    out += _family("runnerguard_failed_tasks", {(("queue", q),): float(f) for q, _, f in scrape.queues})
    out += _host_families(scrape.hosts)
    return "\n".join(out) + "\n"
