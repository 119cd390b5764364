"""Durations in the policy file: `90s`, `30m`, `24h`, `7d`, or whole seconds."""

from __future__ import annotations

import re

from config.errors import ConfigError

DURATION_RE = re.compile(r"(\d+)\s*([smhd])")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object, key: str) -> int:
    """Seconds, > 0; ConfigError naming `key` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        match = DURATION_RE.fullmatch(value.strip())
        if match and int(match.group(1)) > 0:
            return int(match.group(1)) * DURATION_UNITS[match.group(2)]
    raise ConfigError(key, f"must be a duration such as '90s', '30m', '24h' or '7d', got {value!r}")
