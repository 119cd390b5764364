"""A delivery task's RQ job is deleted in its success write (its delivery records the outcome); other tasks keep
RQ's result for RESULT_TTL, and a failed delivery task keeps its job in the failed registry (issue #18)."""

from __future__ import annotations

import time

import redis
from flask.testing import FlaskClient
from rq.job import Job
from rq.registry import FinishedJobRegistry, StartedJobRegistry

from runnerguard.queue import tasks
from runnerguard.store import deliveries
from tests.test_timeline import job_payload
from tests.test_timings import deliver, job_events


def rq_keys_of(client: redis.Redis, guid: str) -> list[bytes]:
    return sorted(client.scan_iter(match=f"rq:*{guid}*", count=1000))


def test_a_done_delivery_task_leaves_no_rq_key(client: FlaskClient, redis_client: redis.Redis, drain) -> None:  # type: ignore[no-untyped-def]
    for i, event in enumerate(job_events(77, "failure", created=time.time() - 600)):
        deliver(client, event, f"gone-{i}")
    assert rq_keys_of(redis_client, "gone-2")  # queued: its jobs exist until they ran
    assert drain(one_queue_at_a_time=True) == 5  # 3 timings, the completed job's rollback check and cause
    for i in range(3):
        delivery = deliveries.load(redis_client, f"gone-{i}")
        assert delivery is not None and delivery.state == deliveries.DONE, delivery
        assert rq_keys_of(redis_client, f"gone-{i}") == []  # no job hash, result stream or execution registry
    for queue in (tasks.EVENTS, tasks.GITHUB):
        assert FinishedJobRegistry(queue, connection=redis_client).get_job_ids() == []
        assert StartedJobRegistry(queue, connection=redis_client).get_job_ids() == []


def test_a_delivery_task_is_deleted_without_a_stand_alone_read(client: FlaskClient, redis_client: redis.Redis,  # type: ignore[no-untyped-def]
                                                              drain) -> None:
    deliver(client, job_payload("queued"), "quiet-1")
    redis_client.config_resetstat()
    drain((tasks.EVENTS,))
    stats = redis_client.info("commandstats")
    # RQ's own delete reads the job's status (HGET) and its executions (ZRANGE + HGETALL each) before deleting
    assert "cmdstat_hget" not in stats, stats.get("cmdstat_hget")
    assert rq_keys_of(redis_client, "quiet-1") == []


def test_other_tasks_keep_rqs_result_for_its_ttl(redis_client: redis.Redis, drain) -> None:  # type: ignore[no-untyped-def]
    assert tasks.TRIM.result_ttl > 0
    job = tasks.enqueue(tasks.TRIM, connection=redis_client)
    drain((tasks.EVENTS,))
    kept = Job.fetch(job.id, connection=redis_client, serializer=tasks.SERIALIZER)
    assert kept.get_status() == "finished"
    assert 0 < redis_client.ttl(kept.key) <= tasks.TRIM.result_ttl
    assert job.id in FinishedJobRegistry(tasks.EVENTS, connection=redis_client).get_job_ids()


def test_every_delivery_task_is_deleted_once_done_and_no_other_task_is() -> None:
    for spec in tasks.TASKS.values():
        if spec.takes_delivery:
            assert spec.result_ttl == 0, spec.name
        elif spec.result_ttl == 0:
            assert spec.name in {"open_rollback", "bulk_replay"}, spec.name  # RQ's own delete: a few per day
