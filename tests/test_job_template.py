"""Jobs enqueued from a JobTemplate are what RQ's own enqueue writes, and a worker runs them."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
import redis
from rq import Queue, SimpleWorker, get_current_job
from rq.job import Job, JobStatus

from runnerguard.queue.job_template import PER_JOB_FIELDS, JobTemplate, TemplateError, timestamp
from runnerguard.queue.tasks import FAILURE_TTL, RESULT_TTL, TIMINGS
from runnerguard.store.atomic import ConditionalExecutor, new_batch

TASK_RETRY, TASK_TIMEOUT = TIMINGS.rq_retry(), TIMINGS.timeout
assert TASK_RETRY is not None
OPTIONS: dict[str, Any] = {"timeout": TASK_TIMEOUT, "result_ttl": RESULT_TTL, "failure_ttl": FAILURE_TTL,
                           "retry": TASK_RETRY}
CALLS_KEY = "test:template-calls"


def record_call(guid: str) -> None:
    """The task the worker runs in these tests: it leaves a trace in Redis."""

    job = get_current_job()
    assert job is not None
    job.connection.rpush(CALLS_KEY, guid)


def _rq_enqueue(client: redis.Redis, queue_name: str, func: str, job_id: str, guid: str) -> None:
    queue = Queue(queue_name, connection=client)
    job = queue.create_job(func, args=(guid,), job_id=job_id, description=f"task {guid}", **OPTIONS)
    queue.enqueue_job(job)


def _template_enqueue(client: redis.Redis, template: JobTemplate, job_id: str, guid: str) -> None:
    pipe = new_batch(client)
    template.enqueue_on(pipe, job_id, (guid,), f"task {guid}", timestamp())
    pipe.execute()


def _script_enqueue(client: redis.Redis, template: JobTemplate, job_id: str, guid: str) -> None:
    """As the intake does: the `@job` instruction in a batch run by the guarded script."""
    batch = new_batch(client)
    template.enqueue_in_script(batch, job_id, (guid,), f"task {guid}", timestamp())
    assert ConditionalExecutor(client).execute_if_new([f"test:guard:{job_id}"], batch, new_batch(client)) == 1


def _readable(fields: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """A job hash with its call as RQ reads it (RQ compresses `data`; the script's jobs keep it as is)."""
    call = fields[b"data"]
    try:
        call = zlib.decompress(call)
    except zlib.error:
        pass
    return {**fields, b"data": call}


@pytest.mark.parametrize("enqueue", [_template_enqueue, _script_enqueue])
@pytest.mark.parametrize("queue_name", ["events", "github", "prewarm.laptop-extra"])
def test_the_stored_job_is_what_rqs_enqueue_writes(redis_client: redis.Redis, queue_name: str,
                                                   enqueue: Any) -> None:
    func = "tests.test_job_template.record_call"
    _rq_enqueue(redis_client, queue_name, func, "d-1_task", "d-1")
    by_rq = redis_client.hgetall(Job.key_for("d-1_task"))
    queue_by_rq = redis_client.lrange(f"rq:queue:{queue_name}", 0, -1)
    registered_by_rq = redis_client.smembers("rq:queues")
    redis_client.flushall()

    template = JobTemplate(Queue(queue_name, connection=redis_client), func, **OPTIONS)
    enqueue(redis_client, template, "d-1_task", "d-1")
    by_template = redis_client.hgetall(Job.key_for("d-1_task"))

    timestamps = {b"created_at", b"enqueued_at"}
    assert {k: v for k, v in _readable(by_template).items() if k not in timestamps} == \
           {k: v for k, v in _readable(by_rq).items() if k not in timestamps}
    assert by_template.keys() == by_rq.keys()
    assert redis_client.lrange(f"rq:queue:{queue_name}", 0, -1) == queue_by_rq == [b"d-1_task"]
    assert redis_client.smembers("rq:queues") == registered_by_rq


@pytest.mark.parametrize("enqueue", [_template_enqueue, _script_enqueue])
def test_rq_reads_a_template_job_back(redis_client: redis.Redis, enqueue: Any) -> None:
    template = JobTemplate(Queue("events", connection=redis_client), "tests.test_job_template.record_call", **OPTIONS)
    enqueue(redis_client, template, "guid-7_timings", "guid-7")
    job = Job.fetch("guid-7_timings", connection=redis_client)
    assert job.func_name == "tests.test_job_template.record_call"
    assert job.args == ("guid-7",) and job.kwargs == {}
    assert job.get_status() == JobStatus.QUEUED
    assert (job.timeout, job.result_ttl, job.failure_ttl) == (TASK_TIMEOUT, RESULT_TTL, FAILURE_TTL)
    assert job.retries_left == TASK_RETRY.max and job.retry_intervals == TASK_RETRY.intervals
    assert job.origin == "events" and job.description == "task guid-7"
    assert job.created_at is not None and job.enqueued_at is not None


@pytest.mark.parametrize("enqueue", [_template_enqueue, _script_enqueue])
def test_a_worker_runs_template_jobs_in_order(redis_client: redis.Redis, enqueue: Any) -> None:
    queue = Queue("events", connection=redis_client)
    template = JobTemplate(queue, "tests.test_job_template.record_call", **OPTIONS)
    for n in range(3):
        enqueue(redis_client, template, f"g{n}_t", f"g{n}")
    SimpleWorker([queue], connection=redis_client).work(burst=True)
    assert redis_client.lrange(CALLS_KEY, 0, -1) == [b"g0", b"g1", b"g2"]
    assert all(Job.fetch(f"g{n}_t", connection=redis_client).get_status() == JobStatus.FINISHED for n in range(3))


def test_each_job_gets_its_own_data_and_description(redis_client: redis.Redis) -> None:
    template = JobTemplate(Queue("events", connection=redis_client), "tests.test_job_template.record_call", **OPTIONS)
    for guid in ("a", "b"):
        _template_enqueue(redis_client, template, f"{guid}_t", guid)
    a, b = (redis_client.hgetall(Job.key_for(f"{g}_t")) for g in ("a", "b"))
    assert {k.decode() for k in a if a[k] != b[k]} <= PER_JOB_FIELDS
    assert a[b"data"] != b[b"data"] and a[b"description"] != b[b"description"]


class _QueueThatWritesMore(Queue):
    """Stands for a future RQ whose enqueue writes something the template does not know about."""

    def enqueue_job(self, job: Job, pipeline: Any = None, at_front: bool = False, **kwargs: Any) -> Job:
        result = super().enqueue_job(job, pipeline=pipeline, at_front=at_front, **kwargs)
        pipeline.zadd("rq:some-new-registry", {job.id: 1})
        return result


class _QueueWithAnIdField(Queue):
    """Stands for a future RQ that stores the job id inside the job hash."""

    def enqueue_job(self, job: Job, pipeline: Any = None, at_front: bool = False, **kwargs: Any) -> Job:
        result = super().enqueue_job(job, pipeline=pipeline, at_front=at_front, **kwargs)
        pipeline.hset(job.key, "self_id", job.id)
        return result


@pytest.mark.parametrize(("queue_class", "message"), [
    (_QueueThatWritesMore, "does not reproduce"),
    (_QueueWithAnIdField, "depends on the job"),
])
def test_an_rq_that_writes_differently_stops_the_template(redis_client: redis.Redis, queue_class: type[Queue],
                                                          message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        JobTemplate(queue_class("events", connection=redis_client), "tests.test_job_template.record_call", **OPTIONS)


def test_a_template_redis_lost_is_put_back_and_the_job_is_whole(redis_client: redis.Redis) -> None:
    template = JobTemplate(Queue("events", connection=redis_client), "tests.test_job_template.record_call", **OPTIONS)
    _script_enqueue(redis_client, template, "a_t", "a")
    expected = redis_client.hgetall(Job.key_for("a_t"))
    redis_client.delete(template.key)  # a flush, or an old copy restored after a failover

    _script_enqueue(redis_client, template, "b_t", "b")
    again = redis_client.hgetall(Job.key_for("b_t"))
    assert again.keys() == expected.keys() and again[b"status"] == b"queued"
    assert redis_client.exists(template.key)
    assert redis_client.lrange("rq:queue:events", 0, -1) == [b"a_t", b"b_t"]


def test_a_batch_naming_an_unknown_template_writes_nothing(redis_client: redis.Redis) -> None:
    """A script is not rolled back on error: the template check comes before the batch's first write."""
    batch = new_batch(redis_client)
    batch.set("test:written-before-the-job", 1)
    batch.execute_command("@job", "rg:rqtpl:never-saved", Job.key_for("x_t"), "rq:queue:events", "rq:queues",
                          "x_t", b"[]", "task x", timestamp())
    with pytest.raises(redis.ResponseError, match="NOTEMPLATE"):
        ConditionalExecutor(redis_client).execute_if_new(["test:guard:x"], batch, new_batch(redis_client))
    assert redis_client.exists("test:written-before-the-job", Job.key_for("x_t"), "rq:queue:events") == 0
