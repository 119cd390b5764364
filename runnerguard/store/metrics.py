"""Prometheus counters and histograms kept in Redis, so every web and worker process adds to the same figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis
from redis.client import Pipeline

from runnerguard.store import keys

# Seconds: from a quick job to the seed's 3h21m failure and beyond.
DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 21600)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series(name: str, labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name


def incr_on(pipe: Pipeline | redis.Redis, name: str, labels: Mapping[str, str], by: float = 1) -> None:
    incr_field_on(pipe, series(name, labels), by)


def incr_field_on(pipe: Pipeline | redis.Redis, field: str, by: float = 1) -> None:
    """`incr_on` for a caller that keeps the `series(...)` field it counts (the intake, once per event)."""
    pipe.hincrbyfloat(keys.METRIC_COUNTERS, field, by)


def incr(client: redis.Redis, name: str, labels: Mapping[str, str], by: float = 1) -> None:
    incr_on(client, name, labels, by)


def observe_on(
    pipe: Pipeline | redis.Redis, name: str, labels: Mapping[str, str], value: float,
    buckets: Sequence[float] = DURATION_BUCKETS,
) -> None:
    """A Prometheus histogram: cumulative buckets, _sum and _count."""
    for bound in buckets:
        if value <= bound:
            incr_on(pipe, f"{name}_bucket", {**labels, "le": str(bound)})
    incr_on(pipe, f"{name}_bucket", {**labels, "le": "+Inf"})
    incr_on(pipe, f"{name}_sum", labels, value)
    incr_on(pipe, f"{name}_count", labels)


def counters(client: redis.Redis) -> dict[str, float]:
    raw: dict[bytes, bytes] = client.hgetall(keys.METRIC_COUNTERS)  # type: ignore[assignment]
    return {k.decode(): float(v) for k, v in raw.items()}


def value(client: redis.Redis, name: str, labels: Mapping[str, str]) -> float:
    raw = client.hget(keys.METRIC_COUNTERS, series(name, labels))
    return float(raw) if raw is not None else 0.0
