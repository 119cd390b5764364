"""Per cache and host counters in Redis (hits, misses, errors, bytes, seconds) and the rows the API serves."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Literal

import redis

from runnerguard.store import keys

Counter = Literal["hits", "misses", "errors", "skipped"]
State = Literal["installed", "missing", "failed"]
MAX_ERROR_CHARS = 500
DAILY_TTL = 8 * 86400  # the 7-day window plus today


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
    daily = keys.prewarm_daily(name, host, _day(now))
    pipe.hincrby(daily, counter, 1)
    pipe.expire(daily, DAILY_TTL)
    if nbytes:
        pipe.hincrby(key, "bytes_downloaded", nbytes)
    pipe.hincrbyfloat(key, "seconds", seconds)
    pipe.hset(key, mapping=fields)
    pipe.sadd(keys.PREWARM_STATS_INDEX, f"{host}\t{name}")
    pipe.execute()


def record_job_answers(client: redis.Redis, name: str, host: str, *, hit: int, waited: int, now: float) -> None:
    """Count the job-side answers an agent reported for a cache: `hit` ready at once, `waited` had to wait."""
    if not hit and not waited:
        return
    pipe = client.pipeline(transaction=True)
    for key in (keys.job_cache_answers(name, host), keys.job_cache_answers_daily(name, host, _day(now))):
        pipe.hincrby(key, "hit", hit)
        pipe.hincrby(key, "waited", waited)
    pipe.expire(keys.job_cache_answers_daily(name, host, _day(now)), DAILY_TTL)
    pipe.sadd(keys.PREWARM_STATS_INDEX, f"{host}\t{name}")
    pipe.execute()


def job_hit_rate(hit: int, waited: int) -> float | None:
    total = hit + waited
    return round(hit / total, 4) if total else None


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def window_rows(client: redis.Redis, *, days: int, now: float) -> list[dict[str, Any]]:
    """Per cache and host, hits / misses / errors over the last `days` UTC days (today included)."""
    pairs = sorted(_seen_pairs(client))
    day_names = [_day(now - d * 86400) for d in range(days)]
    pipe = client.pipeline(transaction=False)
    for host, name in pairs:
        for day in day_names:
            pipe.hgetall(keys.prewarm_daily(name, host, day))
            pipe.hgetall(keys.job_cache_answers_daily(name, host, day))
    answers = iter(pipe.execute())
    rows = []
    for host, name in pairs:
        totals = {"hits": 0, "misses": 0, "errors": 0, "job_hits": 0, "job_waited": 0}
        for _ in day_names:
            for field, value in next(answers).items():
                if _decoded(field) in totals:
                    totals[_decoded(field)] += int(value)
            for field, value in next(answers).items():
                jobside = {"hit": "job_hits", "waited": "job_waited"}.get(_decoded(field))
                if jobside:
                    totals[jobside] += int(value)
        rows.append({"name": name, "host": host, **totals})
    return rows


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


def _seen_pairs(client: redis.Redis) -> set[tuple[str, str]]:
    """(host, cache) of every pre-warm ever recorded."""
    members = (_decoded(m) for m in client.smembers(keys.PREWARM_STATS_INDEX))
    return {(host, name) for host, _, name in (m.partition("\t") for m in members) if name}


def cache_rows(
    redis: redis.Redis, host: str | None = None, *, expected: Iterable[tuple[str, str]] = ()
) -> list[dict[str, Any]]:
    """One row per (cache, host) seen, sorted by name then host; `expected` (name, host) pairs never warmed
    appear as 'missing' so a configured cache does not vanish from the API before its first prewarm."""
    client = redis
    pairs = _seen_pairs(client) | {(h, n) for n, h in expected}
    pairs = {(h, n) for h, n in pairs if host is None or h == host}
    ordered = sorted(pairs, key=lambda hn: (hn[1], hn[0]))
    pipe = client.pipeline(transaction=False)
    for h, n in ordered:
        pipe.hgetall(keys.prewarm_stats(n, h))
        pipe.hgetall(keys.job_cache_answers(n, h))
    answers = pipe.execute()
    rows = []
    for (h, n), raw, jobside in zip(ordered, answers[::2], answers[1::2], strict=True):
        row = _row(raw)
        hits, misses, errors = (int(row.get(f, 0)) for f in ("hits", "misses", "errors"))
        job = _row(jobside)
        job_hits, job_waited = int(job.get("hit", 0)), int(job.get("waited", 0))
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
            # the job's answers where there are any (what a person cares about), else the pre-warms'
            "hit_rate": job_hit_rate(job_hits, job_waited) if job_hits + job_waited
            else hit_rate(hits, misses, errors),
            "prewarm_hit_rate": hit_rate(hits, misses, errors),
            "job_hits": job_hits,
            "job_waited": job_waited,
            "updated_at": float(row["updated_at"]) if "updated_at" in row else None,
        })
    return rows
