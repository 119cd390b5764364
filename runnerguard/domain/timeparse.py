"""Times from outside (API filters, CLI options): ISO 8601 with a zone, epoch seconds, or relative ('72h' ago)."""

from __future__ import annotations

import re
from datetime import datetime

from runnerguard.errors import InvalidInput

RELATIVE_RE = re.compile(r"(\d+)\s*([smhd])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class TimeError(InvalidInput):
    """A time from outside is malformed; the message names the key and the forms accepted."""


def parse_when(raw: object, key: str, *, now: float, allow_zero: bool = True) -> float | None:
    """None for absent; epoch seconds otherwise. `allow_zero=False` refuses '0h' (a window must have a length)."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if not isinstance(raw, str):
        raise TimeError(f"{key} must be a time, got {type(raw).__name__}")
    match = RELATIVE_RE.fullmatch(raw.strip())
    if match:
        amount = int(match.group(1))
        if amount == 0 and not allow_zero:
            raise TimeError(f"{key} must be a duration longer than 0, got {raw[:40]!r}")
        return now - amount * UNITS[match.group(2)]
    try:
        parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise TimeError(f"{key} must be ISO 8601 (2026-11-27T10:00:00Z) or relative (72h), got {raw[:40]!r}") from None
    if parsed.tzinfo is None:
        raise TimeError(f"{key} must carry a time zone (e.g. a trailing Z)")
    return parsed.timestamp()
