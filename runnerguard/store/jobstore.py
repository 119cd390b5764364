"""The job timeline in Redis: one merged record per job, and time indexes per pool and repo (O(log n) windows)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

import orjson
import redis
from redis.client import Pipeline

from runnerguard.domain import causes as cause_rules
from runnerguard.domain.rules import CountingRule
from runnerguard.domain.timeline import JobSnapshot, derive, merge
from runnerguard.store import cause_records, job_members, keys, metrics, time_buckets
from runnerguard.store.atomic import CompareAndSet, new_batch
from runnerguard.store.body_codec import RECORD_ID, frame_dict_id
from runnerguard.store.deliveries import codec_for
from runnerguard.store.time_buckets import TimeIndex

__all__ = ["CountingRule"]

PUBLIC_FIELDS = (
    "repo", "job_id", "run_id", "run_attempt", "workflow", "name", "labels", "pools", "runner_name", "status",
    "conclusion", "created_at", "started_at", "completed_at", "queue_seconds", "run_seconds", "created_at_approximate",
    "failure_cause", "failure_evidence", "source",
)
# What a failed job's cause record adds to its job record when it is read (the record itself never holds them).
CAUSE_FIELDS = {"cause": "failure_cause", "evidence": "failure_evidence", "kind": "failure_kind",
                "step": "failure_step", "person": "failure_by_person", "fork": "from_fork"}


class _RecentValues:
    """What this process last wrote to a few thousand keys: a guess for the compare-and-set, never trusted as such."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._values: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._values.get(key)

    def put(self, key: str, value: bytes) -> None:
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            if len(self._values) > self._size:
                self._values.popitem(last=False)


_last_written = _RecentValues(2048)  # ~2 KB a record: a few MB at most


# What a record stores: the snapshots and when each was first seen (what the merge joins), and the pools. Every
# other field is derived from them (timeline.derive) when the record is read, so none is stored twice.
STORED_FIELDS = ("repo_id", "repo", "snapshots", "seen", "pools")


def encode(client: redis.Redis, record: dict[str, Any]) -> bytes:
    """A record as stored: its stored fields' JSON as a zstd frame with the shipped record dictionary (~1.4 KB of
    JSON -> ~170 bytes: the snapshots repeat each other, and the key names and URL shapes are in the dictionary)."""
    stored = {name: record[name] for name in STORED_FIELDS if name in record}
    return codec_for(client).compress(orjson.dumps(stored), dict_id=RECORD_ID)[1]


def decode(client: redis.Redis, raw: bytes) -> dict[str, Any]:
    """A stored record of any format: plain JSON (written before compression), a zstd frame of the whole record
    (before 2026-12), or a zstd frame of its stored fields, whose other fields are derived here."""
    if raw[:1] == b"{":
        record: dict[str, Any] = orjson.loads(raw)
    else:
        record = orjson.loads(codec_for(client).decompress(frame_dict_id(raw), raw))
    if "created_ts" not in record and "snapshots" in record:
        record = derive(record)
    return record


def member(record: dict[str, Any]) -> str:
    return f"{record['repo_id']}:{record['job_id']}"


def public(record: dict[str, Any]) -> dict[str, Any]:
    return {name: record.get(name) for name in PUBLIC_FIELDS}


def upsert(
    client: redis.Redis,
    snapshot: JobSnapshot,
    *,
    seen_at: float,
    pools: Sequence[str],
    rule: CountingRule,
    retention_seconds: int,
    now: float,
    also: Callable[[Pipeline], None] | None = None,
    failed_counted_later: bool = False,
) -> dict[str, Any]:
    """Merge a snapshot into the job's record and bring every index in line with the merged result.

    `failed_counted_later`: the caller's route queues the job's cause task, which counts a failed job in
    runnerguard_jobs_total with its cause; other writers (a job read back from GitHub's API) count it here.

    Merge in Python with what the record most likely holds (what this process last wrote, else nothing), then write
    only if the record does hold it (compare-and-set in one script); otherwise the script answers what it holds, and
    we merge again. A job's first delivery, and every later one this process sees, costs one round trip instead of
    a read and a write. `also` adds commands to the same atomic write (the delivery's "done" mark).
    """
    key = keys.job(*snapshot.key)
    cas = CompareAndSet(client)
    raw = _last_written.get(key)
    while True:
        previous = decode(client, raw) if raw else None
        record = merge(previous, snapshot, seen_at)
        record["pools"] = sorted(set(record.get("pools") or ()) | set(pools))
        encoded = encode(client, record)
        batch = new_batch(client)
        batch.set(key, encoded, ex=retention_seconds)
        completed = record["completed_ts"] is not None
        first_completion = completed and (previous is None or previous.get("completed_ts") is None)
        # A cause needs a completed record first (its task waits for one), so only a later write of a finished
        # job (a replay, a duplicate) reads it before writing; the run's fork flag is caught by the check below.
        known = attribution(client, record) if completed and not first_completion else {}
        _index(batch, record, rule=rule, now=now, retention_seconds=retention_seconds, known=known,
               previous=previous)
        if first_completion:
            # once per job, however often its deliveries are replayed
            _count_finished(batch, record, known, failed_later=failed_counted_later)
        if also is not None:
            also(batch)
        applied, raw = cas.execute_if_unchanged(key, raw, batch)
        if applied:
            _last_written.put(key, encoded)
            if completed and counts_as(record, rule, attribution(client, record)) != counts_as(record, rule, known):
                # A cause or fork flag we did not index with (landed meanwhile, or not read): its task's reindex
                # may have run before our write, so index again (one written after this read reindexes itself).
                reindex(client, record, rule=rule, retention_seconds=retention_seconds, now=now)
            return record


def attribution(client: redis.Redis, record: dict[str, Any]) -> dict[str, Any]:
    """The job's cause record and its run's fork flag ({} when neither is known yet): one round trip."""
    run_id = record.get("run_id")
    pair = (record["repo_id"], record["job_id"])
    pipe = client.pipeline(transaction=False)
    replies = cause_records.queue_reads(pipe, [pair])
    if isinstance(run_id, int):
        pipe.get(keys.run_fork(record["repo_id"], run_id))
    answers = pipe.execute()
    known: dict[str, Any] = cause_records.parse_reads(codec_for(client), [pair], answers[:replies])[0] or {}
    if len(answers) > replies and answers[replies] is not None:
        known["fork"] = answers[replies] == b"1"
    return known


def reindex(client: redis.Redis, record: dict[str, Any], *, rule: CountingRule, retention_seconds: int,
            now: float) -> None:
    """Bring the indexes in line with a cause (or fork flag) that landed after the job's record was written."""
    batch = client.pipeline(transaction=True)
    _index(batch, record, rule=rule, now=now, retention_seconds=retention_seconds,
           known=attribution(client, record))
    batch.execute()


def counts_as(record: dict[str, Any], rule: CountingRule, known: dict[str, Any]) -> tuple[bool, bool]:
    """(finished, failed) for the failure rate, from the record and what is known of its cause."""
    if record.get("completed_ts") is None:
        return False, False
    return cause_rules.counts(
        record.get("conclusion"), known.get("cause"), person_cancel=bool(known.get("person")),
        from_fork=known.get("fork"), failed=rule.failed, ignored=rule.ignored, counted=rule.counted,
        count_forks=rule.count_forks)


def _index(pipe: Pipeline, record: dict[str, Any], *, rule: CountingRule, now: float, retention_seconds: int,
           known: dict[str, Any] | None = None, previous: dict[str, Any] | None = None) -> None:
    """Index memberships derive from the merged record and its cause alone, so any order ends in the same indexes.

    `previous`: the record as stored before this write (what the compare-and-set checked), whose times say which
    bucket of a time-bucketed index holds the job now, should a time have changed.
    """
    job = member(record)
    repo = record["repo"]
    created, started, completed = record["created_ts"], record["started_ts"], record["completed_ts"]
    counted, failed = counts_as(record, rule, known or {})
    cutoff = now - retention_seconds
    pipe.sadd(keys.REPOS_SEEN, repo)
    # No per-repo created index (~125 bytes a job): find(repo=...) picks the repo's members out of the created
    # indexes by the repo id they start with. Its entries written before age out through trim_indexes.
    pipe.sadd(keys.repo_ids(repo), record["repo_id"])
    # The job index holds the jobs of no pool only (~120 bytes a job less): a pool's job is in its pool's created
    # index, and readers of every job merge the two (runnerguard/store/job_members.py).
    _set_membership(pipe, keys.JOBS_BY_CREATED, job, created if not record["pools"] else None)
    # Not completed: the watchdog's stranded-job check looks here (score: the last sign of progress).
    _set_membership(pipe, keys.JOBS_OPEN, job, (started if started is not None else created)
                    if completed is None else None)
    pipe.zremrangebyscore(keys.JOBS_BY_CREATED, "-inf", cutoff)
    was_created = previous.get("created_ts") if previous else None
    was_started = previous.get("started_ts") if previous else None
    was_completed = previous.get("completed_ts") if previous else None
    for pool in record["pools"]:
        pipe.sadd(keys.POOLS_SEEN, pool)
        # created and started: time-bucketed (store/time_buckets.py), each bucket expiring with the retention
        _move(pipe, job_members.pool_created(pool), job, was_created, created, retention_seconds=retention_seconds)
        _move(pipe, job_members.pool_started(pool), job, was_started, started, retention_seconds=retention_seconds)
        waiting = record["status"] in ("queued", "waiting") and started is None
        _set_membership(pipe, keys.pool_waiting(pool), job, created if waiting else None)
        # Running: the watchdog's timeout sweep reads the oldest of these, O(log n + hung jobs) a minute.
        _set_membership(pipe, keys.pool_running(pool), job, started if completed is None else None)
        if completed is not None:
            # finished and failed: time-bucketed by completed_at too. A job no longer counted (a cause landed:
            # reindex, which knows no previous record) leaves the bucket of its own completed time.
            for index, member_of in ((job_members.pool_finished(pool), counted),
                                     (job_members.pool_failed(pool), failed)):
                score = completed if member_of else None
                for was in {was_completed, completed} - {score, None}:
                    time_buckets.remove(pipe, index, job, was)
                if score is not None:
                    time_buckets.add(pipe, index, job, score, retention_seconds=retention_seconds)
            if counted:
                pipe.zadd(keys.pool_repos(pool), {repo: completed}, gt=True)


def _move(pipe: Pipeline, index: TimeIndex, job: str, was: float | None, score: float | None, *,
          retention_seconds: int) -> None:
    """The job's entry in a time-bucketed index at `score` (None: none), wherever `was` had put it."""
    if was is not None and was != score:
        time_buckets.remove(pipe, index, job, was)
    if score is not None:
        time_buckets.add(pipe, index, job, score, retention_seconds=retention_seconds)


def _repo_time_indexes(repo: str) -> tuple[str, ...]:
    return keys.repo_created(repo), keys.repo_finished(repo), keys.repo_failed(repo)


def _pool_time_indexes(pool: str) -> tuple[str, ...]:
    """The whole-history time indexes of a pool, as the previous release wrote them (each now time-bucketed)."""
    return keys.pool_created(pool), keys.pool_started(pool), keys.pool_finished(pool), keys.pool_failed(pool)


def _count_finished(pipe: Pipeline, record: dict[str, Any], known: dict[str, Any], *, failed_later: bool) -> None:
    conclusion = record.get("conclusion") or "unknown"
    failing = conclusion in cause_rules.FAILING
    if failing and not failed_later:
        # counted here, so the cause task (runnerguard/store/causes.py meter_once) does not count it again
        cause_records.mark_metered_on(pipe, record["repo_id"], record["job_id"])
    for pool in record["pools"] or ["none"]:
        if not failing or not failed_later:
            cause = (known.get("cause") or "unknown") if failing else "none"
            labels = {"pool": pool, "repo": record["repo"], "conclusion": conclusion, "cause": cause}
            metrics.incr_on(pipe, "runnerguard_jobs_total", labels)
        if record["pools"]:
            if record["queue_seconds"] is not None:
                metrics.observe_on(pipe, "runnerguard_job_queue_seconds", {"pool": pool}, record["queue_seconds"])
            if record["run_seconds"] is not None:
                metrics.observe_on(pipe, "runnerguard_job_run_seconds", {"pool": pool}, record["run_seconds"])


def _set_membership(pipe: Pipeline, index: str, job: str, score: float | None) -> None:
    if score is None:
        pipe.zrem(index, job)
    else:
        pipe.zadd(index, {job: score})


def window_counts(client: redis.Redis, pool: str, since: float) -> tuple[int, int]:
    """(finished, failed) jobs of a pool whose completed_at is at or after `since`, in one script call: per index,
    ZCOUNT of the bucket `since` falls in and of the previous release's whole set, ZCARD of each later bucket up to
    now, one EXISTS of the buckets of FUTURE's day ahead (a day's window: ~148 commands an index, each O(1)).

    A window of up to a week reads no history floor (one GET less after every job): it bounds the buckets read
    already; a longer one reads no bucket older than the last trim left."""
    now = time.time()
    floor = since if since >= now - WEEK else max(since, job_members.history_floor(client, now))
    finished, failed = time_buckets.tally(
        client, [time_buckets.Window(job_members.pool_finished(pool), since),
                 time_buckets.Window(job_members.pool_failed(pool), since)], now=now, floor=floor)
    return finished, failed


WEEK = 7 * 86400


def stuck_counts(client: redis.Redis, pool: str, since: float) -> tuple[int, int]:
    """(jobs of the pool queued before `since` and still waiting, jobs of the pool started at or after `since`)."""
    waiting = int(client.zcount(keys.pool_waiting(pool), "-inf", since))
    started = job_members.count(client, job_members.pool_started(pool), since, None)
    return waiting, started


def repos_since(client: redis.Redis, pool: str, since: float) -> set[str]:
    """Repositories whose jobs of the pool completed at or after `since`."""
    return {m.decode() for m in client.zrangebyscore(keys.pool_repos(pool), since, "+inf")}  # type: ignore[union-attr]


def waiting_repos(client: redis.Redis, pool: str, before: float, limit: int = 200) -> set[str]:
    """Repositories with jobs of the pool queued before `before` and still waiting."""
    waiting = client.zrangebyscore(keys.pool_waiting(pool), "-inf", before, start=0, num=limit)
    return {r["repo"] for r in load(client, (m.decode() for m in waiting))}  # type: ignore[union-attr]


def created_since(client: redis.Redis, since: float) -> Iterator[str]:
    """Members of every job created at or after `since`, oldest first, read a page at a time (exports)."""
    return job_members.oldest_first(client, since, EXPORT_PAGE)


EXPORT_PAGE = 2000


def pools_seen(client: redis.Redis) -> list[str]:
    """Every pool name that has recorded jobs, sorted."""
    return sorted(m.decode() for m in client.smembers(keys.POOLS_SEEN))  # type: ignore[union-attr]


def created_count(client: redis.Redis, pool: str, since: float, until: float) -> int:
    """Jobs of the pool created in [since, until] (O(log n))."""
    return job_members.count(client, job_members.pool_created(pool), since, until)


def load(client: redis.Redis, members: Iterable[str]) -> list[dict[str, Any]]:
    ids = list(members)
    if not ids:
        return []
    pairs = [(int(repo_id), int(job_id)) for repo_id, job_id in (m.split(":") for m in ids)]
    pipe = client.pipeline(transaction=False)
    pipe.mget([keys.job(*p) for p in pairs])
    cause_records.queue_reads(pipe, pairs)
    answers = pipe.execute()
    cause_list = cause_records.parse_reads(codec_for(client), pairs, answers[1:])
    records = []
    for raw, cause in zip(answers[0], cause_list, strict=True):
        if not raw:
            continue
        record = decode(client, raw)
        known = cause or {}
        for name, field in CAUSE_FIELDS.items():
            record[field] = known.get(name)
        records.append(record)
    return records


def find(
    client: redis.Redis, *, repo: str | None = None, pool: str | None = None, since: float | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Jobs by created_at (newest first), filtered by repo and/or pool.

    A repository has no index of its own: its jobs are the members of the pool's (or every) created index that
    start with one of its repo ids, so only its own records are loaded; a quiet repository costs a walk over
    member names.
    """
    prefixes = _member_prefixes(client, repo) if repo else None
    if prefixes is not None and not prefixes:
        return []  # no job of that repository was ever recorded
    # Filtered by member names, a page of `limit` may match nothing: read bigger pages of names then.
    page = limit if prefixes is None else max(limit, REPO_SCAN_PAGE)
    members = job_members.newest_first(client, [pool] if pool else None, since, page)
    if prefixes is not None:
        members = (m for m in members if m.startswith(prefixes))
    records: list[dict[str, Any]] = []
    # Load a batch at a time: a second filter is applied here, so read until `limit` match.
    while len(records) < limit and (batch := list(islice(members, limit))):
        for record in load(client, batch):
            if repo and record["repo"].lower() != repo.lower():
                continue
            if pool and pool not in record.get("pools", ()):
                continue
            records.append(record)
    return records[:limit]


REPO_SCAN_PAGE = 5000


def _member_prefixes(client: redis.Redis, repo: str) -> tuple[str, ...]:
    """"repo_id:" of every id the repository name has had: those recorded with its jobs, and, for a repository
    whose jobs all predate that set, the ids its old per-repo index names (its oldest and newest members)."""
    pipe = client.pipeline(transaction=False)
    pipe.smembers(keys.repo_ids(repo))
    pipe.zrange(keys.repo_created(repo), 0, 0)
    pipe.zrange(keys.repo_created(repo), -1, -1)
    ids, oldest, newest = pipe.execute()
    found = {i.decode() for i in ids} | {m.decode().split(":", 1)[0] for m in (*oldest, *newest)}
    return tuple(sorted(f"{i}:" for i in found))


def running_before(client: redis.Redis, pool: str, before: float, limit: int = 200) -> list[str]:
    """Members of the pool's jobs started at or before `before` and not completed, longest running first."""
    members = client.zrangebyscore(keys.pool_running(pool), "-inf", before, start=0, num=limit)
    return [m.decode() for m in members]  # type: ignore[union-attr]


def open_before(client: redis.Redis, before: float, limit: int = 500) -> list[str]:
    """Members of jobs not completed whose last sign of progress (start, else creation) is at or before `before`."""
    members = client.zrangebyscore(keys.JOBS_OPEN, "-inf", before, start=0, num=limit)
    return [m.decode() for m in members]  # type: ignore[union-attr]


def forget_open(client: redis.Redis, record: dict[str, Any]) -> None:
    """GitHub no longer knows the job (404): stop asking about it. A later delivery of the job indexes it again."""
    client.zrem(keys.JOBS_OPEN, member(record))


def failed_jobs(client: redis.Redis, pool: str, since: float, limit: int = 50) -> list[dict[str, Any]]:
    """The most recent failed jobs of a pool in the window (the evidence in a rollback PR)."""
    newest = job_members.newest_of(client, job_members.pool_failed(pool), since, limit)
    return load(client, newest)


def index_state(client: redis.Redis, pool: str) -> dict[str, list[tuple[bytes, float]]]:
    """Every index of a pool as (member, score) pairs, by name: what an order of deliveries could change (the
    reliability checks compare two orders)."""
    state = {name: job_members.pairs(client, index, float("-inf"), None)
             for name, index in (("created", job_members.pool_created(pool)),
                                 ("started", job_members.pool_started(pool)),
                                 ("finished", job_members.pool_finished(pool)),
                                 ("failed", job_members.pool_failed(pool)))}
    for name, key in (("waiting", keys.pool_waiting(pool)), ("running", keys.pool_running(pool))):
        state[name] = job_members.pairs_of(client, key)
    return state


def trim_indexes(client: redis.Redis, *, retention_seconds: int, now: float) -> int:
    """Retention for pools and repos that stopped getting jobs (active ones are trimmed as they are written)."""
    cutoff = now - retention_seconds
    pipe = client.pipeline(transaction=False)
    indexes = [keys.JOBS_BY_CREATED, keys.JOBS_OPEN]
    for pool in (m.decode() for m in client.smembers(keys.POOLS_SEEN)):  # type: ignore[union-attr]
        # also those a write does not trim: waiting jobs (left by a lost "started" delivery), repos by last job,
        # running jobs (left by a lost "completed" delivery the watchdog could not read back)
        indexes += [*_pool_time_indexes(pool), keys.pool_waiting(pool), keys.pool_repos(pool), keys.pool_running(pool)]
        # the cause indexes (runnerguard/store/causes.py), trimmed as causes are written, and here for quiet pools
        indexes += [*(keys.pool_cause(pool, c) for c in cause_rules.CAUSES), keys.pool_failed_steps(pool)]
    for repo in (m.decode() for m in client.smembers(keys.REPOS_SEEN)):  # type: ignore[union-attr]
        indexes += _repo_time_indexes(repo)
    for index in indexes:
        pipe.zremrangebyscore(index, "-inf", cutoff)
    removed = sum(int(n) for n in pipe.execute())
    # The time-bucketed indexes expire by the retention they were written with; a shortened retention drops the
    # buckets from where the last trim stopped (the default history before the first) up to the cutoff.
    since = job_members.history_floor(client, now)
    pipe = client.pipeline(transaction=False)
    for pool in job_members.pools_seen(client):
        for bucketed in (job_members.pool_created(pool), job_members.pool_started(pool),
                         job_members.pool_finished(pool), job_members.pool_failed(pool)):
            time_buckets.trim(pipe, bucketed, since=min(since, cutoff), cutoff=cutoff)
    removed += sum(int(n) for n in pipe.execute())
    try:
        client.set(keys.JOB_HISTORY_FLOOR, repr(cutoff))
    except redis.exceptions.OutOfMemoryError:
        pass  # a full Redis takes deletions only: the next trim walks from the older floor again, no harm
    return removed
