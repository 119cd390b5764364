"""Per cache and host counters in Redis (hits, misses, errors, bytes, seconds) and the rows the API serves."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import redis

from runnerguard import keys

Counter = Literal["hits", "misses", "errors", "skipped"]
State = Literal["installed", "missing", "failed"]
MAX_ERROR_CHARS = 500


def hit_rate(hits: int, misses: int, errors: int) -> float | None:
    """Hits over all prewarms that looked at the cache; None before the first one (0.0 would read as 'all missed')."""
    total = hits + misses + errors
    return round(hits / total, 4) if total else None


def record(
    client: redis.Redis,
    name: str,
    host: str,
    *,
    counter: Counter,
    state: State | None,
    nbytes: int = 0,
    seconds: float = 0.0,
    sha256: str | None = None,
    error: str | None = None,
    now: float,
) -> None:
    """Count one prewarm outcome; one MULTI so the API never reads a half-updated row."""
    key = keys.prewarm_stats(name, host)
    fields: dict[Any, Any] = {"last_result": counter, "updated_at": now, "last_seconds": round(seconds, 6)}
    if state is not None:
        fields["state"] = state
    if sha256 is not None:
        fields["sha256"] = sha256
    if error is not None:
        # kept after later successes, with its time: "why did this fail yesterday" stays answerable
        fields["last_error"] = error[:MAX_ERROR_CHARS]
        fields["last_error_at"] = now
    pipe = client.pipeline(transaction=True)
    pipe.hincrby(key, counter, 1)
    if nbytes:
        pipe.hincrby(key, "bytes_downloaded", nbytes)
    pipe.hincrbyfloat(key, "seconds", seconds)
    pipe.hset(key, mapping=fields)
    pipe.sadd(keys.PREWARM_STATS_INDEX, f"{host}\t{name}")
    pipe.execute()


def set_state(client: redis.Redis, name: str, host: str, state: State, *, now: float) -> None:
    """Change only the state (eviction makes an artifact 'missing' without a prewarm of its own)."""
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.prewarm_stats(name, host), mapping={"state": state, "updated_at": now})
    pipe.sadd(keys.PREWARM_STATS_INDEX, f"{host}\t{name}")
    pipe.execute()


def _decoded(value: bytes | str) -> str:
    # the caller's client may or may not have decode_responses=True
    return value.decode() if isinstance(value, bytes) else value


def _row(raw: dict[Any, Any]) -> dict[str, str]:
    return {_decoded(k): _decoded(v) for k, v in raw.items()}


def cache_rows(
    redis: redis.Redis, host: str | None = None, *, expected: Iterable[tuple[str, str]] = ()
) -> list[dict[str, Any]]:
    """One row per (cache, host) seen, sorted by name then host; `expected` (name, host) pairs never warmed
    appear as 'missing' so a configured cache does not vanish from the API before its first prewarm."""
    client = redis
    members = {_decoded(m) for m in client.smembers(keys.PREWARM_STATS_INDEX)}
    pairs = {tuple(m.split("\t", 1)) for m in members if "\t" in m}
    pairs |= {(h, n) for n, h in expected}
    pairs = {(h, n) for h, n in pairs if host is None or h == host}
    ordered = sorted(pairs, key=lambda hn: (hn[1], hn[0]))
    pipe = client.pipeline(transaction=False)
    for h, n in ordered:
        pipe.hgetall(keys.prewarm_stats(n, h))
    rows = []
    for (h, n), raw in zip(ordered, pipe.execute(), strict=True):
        row = _row(raw)
        hits, misses, errors = (int(row.get(f, 0)) for f in ("hits", "misses", "errors"))
        rows.append({
            "name": n,
            "host": h,
            "state": row.get("state", "missing"),
            "sha256": row.get("sha256"),
            "hits": hits,
            "misses": misses,
            "errors": errors,
            "skipped": int(row.get("skipped", 0)),
            "last_error": row.get("last_error"),  # kept after later successes; last_error_at says when
            "last_error_at": float(row["last_error_at"]) if "last_error_at" in row else None,
            "bytes_downloaded": int(row.get("bytes_downloaded", 0)),
            "seconds": round(float(row.get("seconds", 0.0)), 6),
            "hit_rate": hit_rate(hits, misses, errors),
            "updated_at": float(row["updated_at"]) if "updated_at" in row else None,
        })
    return rows
