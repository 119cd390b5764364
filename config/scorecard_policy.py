"""The policy's scorecard targets: `[scorecard]` for every pool, `scorecard = {...}` per pool on top of it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from config.errors import ConfigError
from runnerguard.domain.scorecard import Targets

# key -> the Targets field it sets; durations and fractions are checked by the parsers policy.py passes in.
KEYS = ("build_time", "cache_hit_rate", "peak_concurrency", "failure_rate", "completion_rate", "fallback_activation")
FRACTIONS = ("cache_hit_rate", "failure_rate", "completion_rate", "fallback_activation")


def check(table: Mapping[str, Any], where: str, *, duration: Callable[[object, str], int],
          fraction: Callable[[object, str], float], count: Callable[[object, str], int]) -> dict[str, Any]:
    """The table with every value checked and normalised (durations in seconds); ConfigError names a bad key."""
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", f"unknown key (allowed: {', '.join(KEYS)})")
    checked: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{where}.{key}"
        if key == "build_time":
            checked[key] = duration(value, name)
        elif key == "peak_concurrency":
            checked[key] = count(value, name)
        else:
            checked[key] = fraction(value, name)
    return checked


def targets(common: Mapping[str, Any], own: Mapping[str, Any], *, runners: int) -> Targets:
    """The seed's targets, then `[scorecard]`, then the pool's own; peak jobs at once defaults to the runner count."""
    return replace(Targets(peak_concurrency=runners), **{**common, **own})
