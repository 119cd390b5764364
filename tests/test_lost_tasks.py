"""A delivery whose RQ job was lost (a crash between RQ's pop and its bookkeeping) is found from the delivery log
and its lost tasks queued again; a task whose job still stands, or that is only a few minutes old, is left alone."""

from __future__ import annotations

import time

import pytest
import redis
from flask.testing import FlaskClient
from rq.job import Job
from rq.registry import StartedJobRegistry

import worker as worker_main
from config import ConfigError, Policy, Settings, load_settings
from handlers import maintenance
from runnerguard.queue import orphans, tasks
from runnerguard.queue.deps import Deps
from runnerguard.queue.worker import build_worker
from runnerguard.services import lost_tasks
from runnerguard.store import deliveries, jobstore
from tests.test_timeline import job_payload
from tests.test_timings import deliver


def lose(client: redis.Redis, guid: str, task: str, queue: str = "events") -> None:
    """A job gone altogether: no job in the queue, no job hash (an expiry, an eviction)."""
    job_id = tasks.job_id_for(guid, task)
    client.lrem(f"rq:queue:{queue}", 0, job_id)
    client.delete(f"rq:job:{job_id}")


def pop_only(client: redis.Redis, guid: str, task: str, queue: str = "events") -> None:
    """What a crash between a worker's BLPOP and its started-registry write leaves (a killed worker, or a primary
    failed over with only the pop replicated): the job's hash says "queued", no queue holds it."""
    client.lrem(f"rq:queue:{queue}", 0, tasks.job_id_for(guid, task))


def grace(seconds: int | None = None) -> Settings:
    env = {"GITHUB_WEBHOOK_SECRET": "s", "REDIS_URL": "redis://127.0.0.1:1/0"}
    return load_settings(env if seconds is None else {**env, "RUNNERGUARD_LOST_TASK_GRACE_SECONDS": str(seconds)})


def sweep(client: redis.Redis, at: float, settings: Settings | None = None) -> list[str]:
    return maintenance.requeue_lost(redis=client, settings=settings or grace(), policy=Policy(), clock=lambda: at)


def test_a_lost_task_is_queued_again_and_runs(client: FlaskClient, redis_client: redis.Redis, drain) -> None:  # type: ignore[no-untyped-def]
    deliver(client, job_payload("completed"), "lost-1")
    deliver(client, job_payload("completed", id=12), "kept-1")
    lose(redis_client, "lost-1", "timings")
    received = deliveries.load(redis_client, "lost-1").received_at  # type: ignore[union-attr]
    # within the grace period nothing is touched: the job may simply be waiting in a busy queue
    assert sweep(redis_client, received + 60) == []
    later = received + 700
    assert sweep(redis_client, later) == ["lost-1"]
    drain()
    assert deliveries.load(redis_client, "lost-1").task_states["timings"] == deliveries.DONE  # type: ignore[union-attr]
    assert len(jobstore.find(redis_client)) == 2
    # done now: a second run finds nothing; the delivery whose job stood was never touched
    assert sweep(redis_client, later) == []
    assert deliveries.load(redis_client, "kept-1").task_states["timings"] == deliveries.DONE  # type: ignore[union-attr]


def test_tasks_whose_jobs_stand_or_finished_are_not_requeued(client: FlaskClient, redis_client: redis.Redis,  # type: ignore[no-untyped-def]
                                                             drain) -> None:
    deliver(client, job_payload("queued"), "waiting-1")
    now = time.time() + 700
    # queued, its job still in the queue (no worker ran yet): a busy queue, not a lost job
    assert sweep(redis_client, now) == []
    drain()
    # done: nothing to do either, even once RQ's own result has expired
    redis_client.delete(f"rq:job:{tasks.job_id_for('waiting-1', 'timings')}")
    assert sweep(redis_client, now) == []


def test_a_task_done_between_the_scan_and_the_job_check_is_not_lost(client: FlaskClient,  # type: ignore[no-untyped-def]
                                                                      redis_client: redis.Redis, drain) -> None:
    deliver(client, job_payload("queued"), "raced-1")
    scanned = deliveries.load(redis_client, "raced-1")  # what the sweep read: the task still queued
    assert scanned is not None and scanned.task_states.get("timings", deliveries.QUEUED) == deliveries.QUEUED
    drain()  # it runs now: the done mark, then its job deleted by the success write
    assert not redis_client.exists(f"rq:job:{tasks.job_id_for('raced-1', 'timings')}")
    assert lost_tasks.lost_tasks(redis_client, scanned) == []
    # a task really lost (no mark, no job) is still found from the same stale read
    deliver(client, job_payload("queued", id=13), "lost-2")
    stale = deliveries.load(redis_client, "lost-2")
    lose(redis_client, "lost-2", "timings")
    assert lost_tasks.lost_tasks(redis_client, stale) == ["timings"]  # type: ignore[arg-type]


def test_a_job_only_popped_is_pushed_back_and_only_that_task_runs_again(client: FlaskClient,  # type: ignore[no-untyped-def]
                                                                        redis_client: redis.Redis, drain) -> None:
    deliver(client, job_payload("completed"), "popped-1")
    pop_only(redis_client, "popped-1", "rollback")
    drain()  # the other tasks run; the popped one is nowhere a worker looks
    received = deliveries.load(redis_client, "popped-1").received_at  # type: ignore[union-attr]
    assert deliveries.load(redis_client, "popped-1").task_states.get("rollback") is None  # type: ignore[union-attr]
    job_id = tasks.job_id_for("popped-1", "rollback")
    assert [o.why for o in orphans.unrunnable(redis_client, [job_id], settle=0)] == [orphans.ORPHANED]
    assert sweep(redis_client, received + 60) == []  # within the grace
    assert sweep(redis_client, received + 700) == ["popped-1"]
    # the same job, back in its queue: a second sweep before any worker ran it finds it queued, not lost
    assert redis_client.lrange("rq:queue:events", 0, -1) == [job_id.encode()]
    assert sweep(redis_client, received + 700) == []
    drain()
    done = [a["task"] for a in deliveries.attempts(redis_client, "popped-1") if a["state"] == deliveries.DONE]
    assert sorted(done) == ["rollback", "timings"]  # each once: the finished timings task did not run again


def test_an_orphaned_retry_of_a_failed_task_is_found_too(client: FlaskClient, redis_client: redis.Redis,  # type: ignore[no-untyped-def]
                                                         drain) -> None:
    deliver(client, job_payload("completed"), "retry-1")
    pop_only(redis_client, "retry-1", "timings")
    deliveries.mark_task(redis_client, "retry-1", "timings", deliveries.FAILED, error="ConnectionError: gone")
    received = deliveries.load(redis_client, "retry-1").received_at  # type: ignore[union-attr]
    assert sweep(redis_client, received + 700) == ["retry-1"]
    drain()
    assert deliveries.load(redis_client, "retry-1").task_states["timings"] == deliveries.DONE  # type: ignore[union-attr]


def test_a_worker_stopped_right_after_registering_a_job_leaves_it_to_rqs_retry(client: FlaskClient,  # type: ignore[no-untyped-def]
                                                                              redis_client: redis.Redis,
                                                                              settings: Settings) -> None:
    """The job is "started" in the same write as its started-registry entry: a worker gone right after that write
    leaves a job RQ's cleanup retries, not one it drops as a leftover (a job still saying "queued")."""
    deliver(client, job_payload("completed"), "stopped-1")
    worker = build_worker(redis_client, ["events"], Deps.from_settings(settings, client=redis_client))
    found = worker.dequeue_job_and_maintain_ttl(timeout=1)
    assert found is not None
    job, queue = found
    worker.prepare_execution(job)  # ...and the worker is gone before its next write
    assert Job.fetch(job.id, connection=redis_client).get_status().value == "started"
    registry = StartedJobRegistry(queue.name, connection=redis_client)
    registry.cleanup(timestamp=time.time() + 3600)  # its execution expired: the worker is dead
    assert Job.fetch(job.id, connection=redis_client).get_status().value in ("scheduled", "queued")  # retried
    assert orphans.unrunnable(redis_client, [job.id], settle=0) == []


def test_the_grace_is_configurable_and_the_sweep_runs_at_half_of_it() -> None:
    assert grace(30).lost_task_grace_seconds == 30
    assert worker_main.requeue_lost_every(grace(30)) == 15
    assert worker_main.requeue_lost_every(grace()) == worker_main.REQUEUE_LOST_EVERY
    for bad in ("5", "ten"):
        with pytest.raises(ConfigError, match="RUNNERGUARD_LOST_TASK_GRACE_SECONDS"):
            load_settings({"GITHUB_WEBHOOK_SECRET": "s", "REDIS_URL": "redis://127.0.0.1:1/0",
                           "RUNNERGUARD_LOST_TASK_GRACE_SECONDS": bad})


def test_a_short_grace_finds_a_lost_task_sooner(client: FlaskClient, redis_client: redis.Redis) -> None:
    deliver(client, job_payload("completed"), "short-1")
    pop_only(redis_client, "short-1", "timings")
    received = deliveries.load(redis_client, "short-1").received_at  # type: ignore[union-attr]
    assert sweep(redis_client, received + 20, grace(30)) == []
    assert sweep(redis_client, received + 40, grace(30)) == ["short-1"]
