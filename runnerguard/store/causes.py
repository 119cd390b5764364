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
from runnerguard.store import cause_records, jobstore, keys, metrics
from runnerguard.store.atomic import APPLIED, ConditionalExecutor, new_batch
from runnerguard.store.cause_records import TTL
from runnerguard.store.deliveries import codec_for
from runnerguard.store.per_pool import PerPool


def load(client: redis.Redis, repo_id: int, job_id: int) -> dict[str, Any] | None:
    """The job's cause record (None: not attributed yet), in either layout (store/cause_records.py)."""
    pipe = client.pipeline(transaction=False)
    cause_records.queue_reads(pipe, [(repo_id, job_id)])
    return cause_records.parse_reads(codec_for(client), [(repo_id, job_id)], pipe.execute())[0]


def save(client: redis.Redis, record: dict[str, Any], data: dict[str, Any], *, rule: CountingRule,
         retention_seconds: int, now: float) -> None:
    """Store the cause, move the job in the pool cause indexes, and bring the failure-rate indexes in line."""
    repo_id, job_id = record["repo_id"], record["job_id"]
    member = jobstore.member(record)
    completed = record.get("completed_ts") or now
    cutoff = now - retention_seconds
    frame = cause_records.encode(codec_for(client), data)
    had = cause_records.chunk_count(client, repo_id, job_id)
    pipe = client.pipeline(transaction=True)
    cause_records.write_on(pipe, repo_id, job_id, frame, had_chunks=had)
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
    goes first, so a script that fails part-way leaves no marker and the retry counts. The marker is a field of the
    job's cause hash; the previous release's marker key counts as one too (no second count after a deploy).
    """
    main = new_batch(client)
    for pool in record.get("pools") or ["none"]:
        metrics.incr_on(main, "runnerguard_jobs_total", {
            "pool": pool, "repo": record["repo"], "conclusion": record.get("conclusion") or "unknown",
            "cause": cause})
    cause_records.mark_metered_on(main, record["repo_id"], record["job_id"])
    guard_keys, guard_field = cause_records.metered_guards(record["repo_id"], record["job_id"])
    outcome = _executor(client).execute_if_new(guard_keys, main, new_batch(client), guard_field=guard_field)
    return outcome == APPLIED


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
    return cause_records.host_fact(client, repo_id, job_id)


def save_host_fact(client: redis.Redis, repo_id: int, job_id: int, fact: dict[str, Any]) -> None:
    cause_records.save_host_fact(client, repo_id, job_id, fact)


# --- twins ---------------------------------------------------------------------------------------------------------

def twin_digest(workflow: str | None, name: str | None, head_sha: str) -> str:
    text = "\0".join((workflow or "", rules.twin_key_name(name), head_sha))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# A twin's info as a JSON array in this order (~40 bytes) rather than an object (~85): a hash stays a listpack only
# while every value is at most 64 bytes, and one object made the whole hash a hashtable (328 bytes for one twin).
# A twin with a long step or runner name still makes its hash a hashtable; it reads the same.
TWIN_FIELDS = ("pools", "failed_step", "runner", "completed_ts")


def add_twin(client: redis.Redis, repo_id: int, digest: str, job_id: int, info: dict[str, Any]) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.twins(repo_id, digest), str(job_id), _twin_value(info))
    pipe.expire(keys.twins(repo_id, digest), TTL)
    pipe.execute()


def _twin_value(info: dict[str, Any]) -> bytes:
    if set(info) != set(TWIN_FIELDS):
        return orjson.dumps(info)  # not the usual fields: kept as an object, read as one
    completed = info["completed_ts"]
    if isinstance(completed, float) and completed.is_integer():
        completed = int(completed)  # "1796096735" and not "1796096735.0": read back as a float
    return orjson.dumps([*(info[name] for name in TWIN_FIELDS[:-1]), completed])


def twins_of(client: redis.Redis, repo_id: int, digest: str) -> dict[int, dict[str, Any]]:
    """Every twin of the digest, written by this release (arrays) or the previous one (objects)."""
    raw: dict[bytes, bytes] = client.hgetall(keys.twins(repo_id, digest))  # type: ignore[assignment]
    found = {}
    for field, value in raw.items():
        try:
            info = orjson.loads(value)
            if isinstance(info, list):
                info = dict(zip(TWIN_FIELDS, info, strict=True))
                if info["completed_ts"] is not None:
                    info["completed_ts"] = float(info["completed_ts"])
            if not isinstance(info, dict):
                raise ValueError("not an object or an array")
            found[int(field)] = info
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            raise cause_records.CauseRecordError(
                f"twin {field!r} of {keys.twins(repo_id, digest)} is corrupted ({exc})") from None
    return found


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
