"""A delivery whose RQ job was lost (a crash between RQ's pop and its bookkeeping) is found from the delivery log
and its tasks queued again; a task whose job still stands, or that is only a few minutes old, is left alone."""

from __future__ import annotations

import time

import redis
from flask.testing import FlaskClient

from config import Policy
from handlers import maintenance
from runnerguard.queue import tasks
from runnerguard.store import deliveries, jobstore
from tests.test_timeline import job_payload
from tests.test_timings import deliver


def lose(client: redis.Redis, guid: str, task: str, queue: str = "events") -> None:
    """What a crash between BLPOP and the started-registry write leaves: no job in the queue, no job hash."""
    job_id = tasks.job_id_for(guid, task)
    client.lrem(f"rq:queue:{queue}", 0, job_id)
    client.delete(f"rq:job:{job_id}")


def test_a_lost_task_is_queued_again_and_runs(client: FlaskClient, redis_client: redis.Redis, drain) -> None:  # type: ignore[no-untyped-def]
    deliver(client, job_payload("completed"), "lost-1")
    deliver(client, job_payload("completed", id=12), "kept-1")
    lose(redis_client, "lost-1", "timings")
    received = deliveries.load(redis_client, "lost-1").received_at  # type: ignore[union-attr]
    # within the grace period nothing is touched: the job may simply be waiting in a busy queue
    assert maintenance.requeue_lost(redis=redis_client, policy=Policy(), clock=lambda: received + 60) == []
    later = received + 700
    assert maintenance.requeue_lost(redis=redis_client, policy=Policy(), clock=lambda: later) == ["lost-1"]
    drain()
    assert deliveries.load(redis_client, "lost-1").task_states["timings"] == deliveries.DONE  # type: ignore[union-attr]
    assert len(jobstore.find(redis_client)) == 2
    # done now: a second run finds nothing; the delivery whose job stood was never touched
    assert maintenance.requeue_lost(redis=redis_client, policy=Policy(), clock=lambda: later) == []
    assert deliveries.load(redis_client, "kept-1").task_states["timings"] == deliveries.DONE  # type: ignore[union-attr]


def test_tasks_whose_jobs_stand_or_finished_are_not_requeued(client: FlaskClient, redis_client: redis.Redis,  # type: ignore[no-untyped-def]
                                                             drain) -> None:
    deliver(client, job_payload("queued"), "waiting-1")
    now = time.time() + 700
    # queued, its job still in the queue (no worker ran yet): a busy queue, not a lost job
    assert maintenance.requeue_lost(redis=redis_client, policy=Policy(), clock=lambda: now) == []
    drain()
    # done: nothing to do either, even once RQ's own result has expired
    redis_client.delete(f"rq:job:{tasks.job_id_for('waiting-1', 'timings')}")
    assert maintenance.requeue_lost(redis=redis_client, policy=Policy(), clock=lambda: now) == []
