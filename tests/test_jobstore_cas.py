"""The timeline's compare-and-set: a wrong guess of the record loses nothing, whoever wrote in between."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import redis

from runnerguard.domain.events import parse_workflow_job
from runnerguard.store import job_members, jobstore, keys, time_buckets
from runnerguard.store.atomic import CompareAndSet, new_batch
from tests.test_timeline import fold, lifecycle

ROOT = Path(__file__).resolve().parents[1]
# The lifecycle's jobs are dated 2026-11-27 and the time-bucketed indexes expire by the wall clock: a retention
# that keeps them (ten years) for the indexes to be checked.
RETENTION = 10 * 365 * 86400


def _upsert(client: redis.Redis, payload: dict, seen_at: float) -> dict:  # type: ignore[type-arg]
    return jobstore.upsert(client, parse_workflow_job(payload), seen_at=seen_at, pools=["self-hosted"],
                           rule=jobstore.CountingRule(), retention_seconds=RETENTION, now=seen_at)


def test_a_wrong_guess_answers_the_current_value_and_writes_nothing(redis_client: redis.Redis) -> None:
    cas = CompareAndSet(redis_client)
    redis_client.set("k", b"v1")
    batch = new_batch(redis_client)
    batch.set("written", b"yes")
    assert cas.execute_if_unchanged("k", b"v0", batch) == (False, b"v1")
    assert redis_client.get("written") is None
    assert cas.execute_if_unchanged("missing", b"v0", batch) == (False, None)
    assert redis_client.get("written") is None
    assert cas.execute_if_unchanged("k", b"v1", batch) == (True, None)
    assert redis_client.get("written") == b"yes"


def test_a_record_another_process_changed_is_merged_not_overwritten(redis_client: redis.Redis,
                                                                    redis_url: str) -> None:
    queued, waiting, in_progress, completed = lifecycle()
    _upsert(redis_client, *queued)  # this process now guesses the record is "queued"
    # Another worker process records the completion meanwhile; this process's guess is stale from here on.
    other = textwrap.dedent(f"""
        import redis
        from runnerguard.store import jobstore
        from runnerguard.domain.events import parse_workflow_job
        client = redis.Redis.from_url({redis_url!r})
        jobstore.upsert(client, parse_workflow_job({completed[0]!r}), seen_at={completed[1]!r},
                        pools=["self-hosted"], rule=jobstore.CountingRule(), retention_seconds={RETENTION},
                        now={completed[1]!r})
    """)
    subprocess.run([sys.executable, "-c", other], cwd=ROOT, check=True, timeout=60)
    _upsert(redis_client, *in_progress)
    _upsert(redis_client, *waiting)
    stored = jobstore.decode(redis_client, redis_client.get(keys.job(3, 11)))  # type: ignore[arg-type]
    expected = fold([queued, completed, in_progress, waiting])
    assert {k: stored[k] for k in expected} == expected
    assert stored["conclusion"] == "success" and stored["run_seconds"] is not None
    # and the finished-job indexes counted it once (read around its completion: the fixture's date is fixed)
    done = stored["completed_ts"]
    finished = job_members.pool_finished("self-hosted")
    assert time_buckets.count(redis_client, finished, done - 1, done + 1, now=done, floor=done - 1) == 1
