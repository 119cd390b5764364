"""Failure causes in Redis: each failed job's cause and the inputs it came from, twins, per-pool cause indexes.

Kept apart from the job record (rebuilt from its deliveries on every merge). Everything a cause is computed from is
stored here the first time it is read (annotations, the run's fork flag, the host's report), so recomputing it on a
replay gives the same answer.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import orjson
import redis

from runnerguard.domain import causes as rules
from runnerguard.domain.rules import CountingRule
from runnerguard.store import jobstore, keys, metrics
from runnerguard.store.atomic import ConditionalExecutor, new_batch
from runnerguard.store.per_pool import PerPool

TTL = 31 * 86400  # a little over the longest job retention: a cause outlives no record by much


def load(client: redis.Redis, repo_id: int, job_id: int) -> dict[str, Any] | None:
    raw = client.get(keys.job_cause(repo_id, job_id))
    return orjson.loads(raw) if raw else None


def save(client: redis.Redis, record: dict[str, Any], data: dict[str, Any], *, rule: CountingRule,
         retention_seconds: int, now: float) -> None:
    """Store the cause, move the job in the pool cause indexes, and bring the failure-rate indexes in line."""
    repo_id, job_id = record["repo_id"], record["job_id"]
    member = jobstore.member(record)
    completed = record.get("completed_ts") or now
    cutoff = now - retention_seconds
    pipe = client.pipeline(transaction=True)
    pipe.set(keys.job_cause(repo_id, job_id), orjson.dumps(data), ex=TTL)
    for pool in record.get("pools") or ():
        for cause in rules.CAUSES:
            index = keys.pool_cause(pool, cause)
            if cause == data["cause"] and not data.get("person") and not data.get("fork"):
                pipe.zadd(index, {member: completed})
            else:
                pipe.zrem(index, member)
            pipe.zremrangebyscore(index, "-inf", cutoff)
        steps = keys.pool_failed_steps(pool)
        if data.get("step"):
            pipe.zadd(steps, {f"{member}\t{data['step']}": completed})
        pipe.zremrangebyscore(steps, "-inf", cutoff)
    pipe.execute()
    jobstore.reindex(client, record, rule=rule, retention_seconds=retention_seconds, now=now)


def meter_once(client: redis.Redis, record: dict[str, Any], cause: str) -> bool:
    """runnerguard_jobs_total for a failed job, once, with the cause it first got.

    The "counted" marker and the count are one script: written apart, a worker stopped between the two, or a
    failover that kept only the marker, would leave a retry that finds the marker and counts nothing. The count
    goes first, so a script that fails part-way leaves no marker and the retry counts.
    """
    main = new_batch(client)
    for pool in record.get("pools") or ["none"]:
        metrics.incr_on(main, "runnerguard_jobs_total", {
            "pool": pool, "repo": record["repo"], "conclusion": record.get("conclusion") or "unknown",
            "cause": cause})
    marker = keys.cause_metered(record["repo_id"], record["job_id"])
    main.set(marker, "1", ex=TTL)
    return _executor(client).execute_if_absent(marker, main)


# One per Redis connection pool: the executor keeps a connection per thread, not one per call.
_executor = PerPool(ConditionalExecutor)


# --- inputs, read once ---------------------------------------------------------------------------------------------

def cached_annotations(client: redis.Redis, repo_id: int, job_id: int) -> list[str] | None:
    raw = client.get(keys.job_annotations(repo_id, job_id))
    return orjson.loads(raw) if raw else None


def save_annotations(client: redis.Redis, repo_id: int, job_id: int, messages: list[str]) -> None:
    client.set(keys.job_annotations(repo_id, job_id), orjson.dumps(messages), ex=TTL)


def cached_fork(client: redis.Redis, repo_id: int, run_id: int) -> bool | None:
    raw = client.get(keys.run_fork(repo_id, run_id))
    return None if raw is None else raw == b"1"


def save_fork(client: redis.Redis, repo_id: int, run_id: int, from_fork: bool) -> None:
    client.set(keys.run_fork(repo_id, run_id), "1" if from_fork else "0", ex=TTL)


def cached_host_fact(client: redis.Redis, repo_id: int, job_id: int) -> dict[str, Any] | None:
    raw = client.get(keys.job_host_fact(repo_id, job_id))
    return orjson.loads(raw) if raw else None


def save_host_fact(client: redis.Redis, repo_id: int, job_id: int, fact: dict[str, Any]) -> None:
    client.set(keys.job_host_fact(repo_id, job_id), orjson.dumps(fact), ex=TTL)


# --- twins ---------------------------------------------------------------------------------------------------------

def twin_digest(workflow: str | None, name: str | None, head_sha: str) -> str:
    text = "\0".join((workflow or "", rules.twin_key_name(name), head_sha))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def add_twin(client: redis.Redis, repo_id: int, digest: str, job_id: int, info: dict[str, Any]) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.twins(repo_id, digest), str(job_id), orjson.dumps(info))
    pipe.expire(keys.twins(repo_id, digest), TTL)
    pipe.execute()


def twins_of(client: redis.Redis, repo_id: int, digest: str) -> dict[int, dict[str, Any]]:
    raw: dict[bytes, bytes] = client.hgetall(keys.twins(repo_id, digest))  # type: ignore[assignment]
    return {int(k): orjson.loads(v) for k, v in raw.items()}


# --- what the dashboard and the API read ---------------------------------------------------------------------------

def counts_by_cause(client: redis.Redis, pool: str, since: float) -> dict[str, int]:
    """Failed jobs of the pool by cause, completed at or after `since`: one ZCOUNT per cause, O(log n)."""
    pipe = client.pipeline(transaction=False)
    for cause in rules.CAUSES:
        pipe.zcount(keys.pool_cause(pool, cause), since, "+inf")
    return {cause: int(n) for cause, n in zip(rules.CAUSES, pipe.execute(), strict=True)}


def top_failing_steps(client: redis.Redis, pool: str, since: float, limit: int = 5) -> list[tuple[str, int]]:
    """The user steps that failed most often in the pool since `since` (most first, then by name)."""
    members = client.zrangebyscore(keys.pool_failed_steps(pool), since, "+inf")
    counted = Counter(m.decode().split("\t", 1)[1] for m in members)  # type: ignore[union-attr]
    return sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
