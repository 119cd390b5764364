"""The cause store: a cause moves the pool's indexes, and a replayed delivery keeps what the cause decided."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from runnerguard.domain.events import parse_workflow_job
from runnerguard.domain.rules import CountingRule
from runnerguard.store import causes, jobstore, keys, metrics
from tests.test_timeline import job_payload
from tests.test_timings import RUNNER, iso

RULE = CountingRule()
POOL = "self-hosted"


def completed(job_id: int, conclusion: str, at: float) -> dict[str, Any]:
    payload = job_payload("completed", id=job_id, run_id=job_id * 10, labels=["self-hosted"], created_at=iso(at - 600),
                          started_at=iso(at - 500), completed_at=iso(at), status="completed", conclusion=conclusion,
                          **RUNNER)
    payload["repository"] = {"id": 3, "full_name": "octo/app"}
    return payload


def upsert(client: redis.Redis, payload: dict[str, Any], now: float) -> dict[str, Any]:
    return jobstore.upsert(client, parse_workflow_job(payload), seen_at=now, pools=[POOL], rule=RULE,
                           retention_seconds=86400, now=now)


def window(client: redis.Redis, now: float) -> tuple[int, int]:
    return jobstore.window_counts(client, POOL, now - 86400)


def test_a_cause_moves_the_indexes_and_a_replay_keeps_it(redis_client: redis.Redis) -> None:
    now = time.time()
    failing, cancelled = completed(1, "failure", now - 60), completed(2, "cancelled", now - 30)
    record = upsert(redis_client, failing, now)
    lost = upsert(redis_client, cancelled, now)
    assert window(redis_client, now) == (1, 1)  # the seed's rule until a cause lands; cancelled counts neither way
    causes.save(redis_client, record, {"cause": "code", "evidence": "twin", "step": "Run tests"}, rule=RULE,
                retention_seconds=86400, now=now)
    causes.save(redis_client, lost, {"cause": "runner", "evidence": "lost"}, rule=RULE, retention_seconds=86400,
                now=now)
    assert window(redis_client, now) == (2, 1)  # code: finished, not failed; the runner's cancel: both
    for _ in range(2):  # replayed deliveries rebuild the record, never the cause's counting
        upsert(redis_client, failing, now)
        upsert(redis_client, cancelled, now)
    assert window(redis_client, now) == (2, 1)
    assert causes.counts_by_cause(redis_client, POOL, now - 86400) == {"runner": 1, "code": 1, "timeout": 0,
                                                                        "unknown": 0}
    assert causes.top_failing_steps(redis_client, POOL, now - 86400, 5) == [("Run tests", 1)]
    [loaded] = jobstore.load(redis_client, ["3:1"])
    assert (loaded["failure_cause"], loaded["failure_evidence"]) == ("code", "twin")
    assert jobstore.public(loaded)["failure_cause"] == "code"


def test_a_fork_flag_takes_the_job_out_of_both_counts(redis_client: redis.Redis) -> None:
    now = time.time()
    record = upsert(redis_client, completed(5, "success", now - 60), now)
    assert window(redis_client, now) == (1, 0)
    causes.save_fork(redis_client, 3, 50, True)
    jobstore.reindex(redis_client, record, rule=RULE, retention_seconds=86400, now=now)
    assert window(redis_client, now) == (0, 0)
    upsert(redis_client, completed(5, "success", now - 60), now)
    assert window(redis_client, now) == (0, 0)


def test_the_cause_indexes_are_trimmed_with_the_rest(redis_client: redis.Redis) -> None:
    now = time.time()
    record = upsert(redis_client, completed(7, "failure", now - 3 * 86400), now - 3 * 86400)
    causes.save(redis_client, record, {"cause": "runner", "evidence": "x", "step": "Run tests"}, rule=RULE,
                retention_seconds=7 * 86400, now=now)
    assert redis_client.zcard(keys.pool_cause(POOL, "runner")) == 1
    jobstore.trim_indexes(redis_client, retention_seconds=86400, now=now)
    assert redis_client.zcard(keys.pool_cause(POOL, "runner")) == 0
    assert redis_client.zcard(keys.pool_failed_steps(POOL)) == 0


def test_a_failed_job_is_counted_once_whichever_writer_counts_it(redis_client: redis.Redis) -> None:
    now = time.time()
    labels = {"pool": POOL, "repo": "octo/app", "conclusion": "failure"}
    rest = upsert(redis_client, completed(8, "failure", now - 60), now)  # read back from GitHub: counted at once
    assert metrics.value(redis_client, "runnerguard_jobs_total", {**labels, "cause": "unknown"}) == 1
    assert not causes.meter_once(redis_client, rest, "runner")  # its cause task then counts nothing
    hook = jobstore.upsert(redis_client, parse_workflow_job(completed(9, "failure", now - 60)), seen_at=now,
                           pools=[POOL], rule=RULE, retention_seconds=86400, now=now, failed_counted_later=True)
    assert metrics.value(redis_client, "runnerguard_jobs_total", {**labels, "cause": "runner"}) == 0
    assert causes.meter_once(redis_client, hook, "runner") and not causes.meter_once(redis_client, hook, "code")
    assert metrics.value(redis_client, "runnerguard_jobs_total", {**labels, "cause": "runner"}) == 1


def test_a_failed_count_leaves_no_marker_so_the_retry_counts(redis_client: redis.Redis) -> None:
    """The marker and the count are written together: a write that fails half-way must not leave the marker alone
    (a retry would then find the job counted and count nothing)."""
    now = time.time()
    labels = {"pool": POOL, "repo": "octo/app", "conclusion": "failure", "cause": "runner"}
    hook = jobstore.upsert(redis_client, parse_workflow_job(completed(10, "failure", now - 60)), seen_at=now,
                           pools=[POOL], rule=RULE, retention_seconds=86400, now=now, failed_counted_later=True)
    saved = redis_client.dump(keys.METRIC_COUNTERS)
    redis_client.set(keys.METRIC_COUNTERS, "not a hash")  # the count's write fails
    with pytest.raises(redis.ResponseError):
        causes.meter_once(redis_client, hook, "runner")
    assert not redis_client.exists(keys.cause_metered(hook["repo_id"], hook["job_id"]))
    assert not redis_client.hexists(keys.job_causes(hook["repo_id"], hook["job_id"]), "m")
    redis_client.delete(keys.METRIC_COUNTERS)
    if saved is not None:
        redis_client.restore(keys.METRIC_COUNTERS, 0, saved)
    assert causes.meter_once(redis_client, hook, "runner")  # the retry counts it, once
    assert not causes.meter_once(redis_client, hook, "runner")
    assert metrics.value(redis_client, "runnerguard_jobs_total", labels) == 1
