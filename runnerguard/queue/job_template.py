"""Enqueue RQ jobs from a template that RQ itself wrote once: the intake's hot path without RQ's per-job object work.

`Queue.enqueue_job` builds a Job object, resolves its serializer (a runtime Protocol check), formats two timestamps,
compresses its data and queues two HSETs, a SADD and an RPUSH: about a fifth of the intake's CPU per delivery,
measured with bench/bench_ingest.py. Every job of one (task, queue) differs only in its id, its argument (the
delivery id), its description and its timestamps, so a template asks RQ to enqueue a probe job once, keeps the hash
RQ wrote, and per delivery fills in only those fields. What lands in Redis is what RQ itself would have written:
tests/test_job_template.py compares the two field by field, and the template refuses to build if RQ's enqueue ever
writes anything it does not understand, so an RQ upgrade fails loudly at start-up instead of queueing jobs a worker
cannot read.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from redis.client import Pipeline
from rq import Queue
from rq.job import Job
from rq.utils import now, utcformat

from runnerguard.errors import RunnerguardError
from runnerguard.store import rq_templates

_PROBE_ID = "runnerguard-template-probe"
# Fields that differ from job to job; every other field of RQ's job hash is the same for one (task, queue).
PER_JOB_FIELDS = frozenset({"data", "description", "created_at", "enqueued_at"})


class TemplateError(RunnerguardError):
    """RQ's enqueue wrote something the template does not reproduce: RQ changed, this module must follow."""


def timestamp() -> str:
    """RQ's own format for created_at / enqueued_at, taken once per delivery for all of its jobs."""
    return utcformat(now())


class JobTemplate:
    """The jobs of one task on one queue. Thread-safe: nothing in it changes after construction."""

    def __init__(self, queue: Queue, func: str, **job_options: Any) -> None:
        self.queue = queue
        self.func = func
        probe = queue.create_job(func, args=(_PROBE_ID,), job_id=_PROBE_ID, description=_PROBE_ID, **job_options)
        batch = queue.connection.pipeline(transaction=False)
        batch.multi()  # collected, never executed
        queue.enqueue_job(probe, pipeline=batch)
        self._fields = self._static_fields(batch, probe)
        batch.reset()
        self._serializer = queue.serializer
        # The same fields, kept in Redis for the intake's script (`enqueue_in_script`).
        self.key = rq_templates.save(queue.connection, self._fields)

    def _static_fields(self, batch: Pipeline, probe: Job) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for args, _options in batch.command_stack:
            name, key, *rest = args
            if name == "HSET" and key == probe.key:
                fields.update(zip(rest[0::2], rest[1::2], strict=True))
            elif name == "SADD" and key == self.queue.redis_queues_keys and rest == [self.queue.key]:
                pass  # the queue's registration, repeated per job below
            elif name == "RPUSH" and key == self.queue.key and rest == [_PROBE_ID]:
                pass  # the push itself, repeated per job below
            else:
                raise TemplateError(f"RQ's enqueue_job wrote {name} {key}, which JobTemplate does not reproduce")
        static = {k: v for k, v in fields.items() if k not in PER_JOB_FIELDS}
        for field, value in static.items():
            if _PROBE_ID in str(value):
                raise TemplateError(f"RQ's job field {field!r} depends on the job; JobTemplate would copy it")
        missing = PER_JOB_FIELDS - fields.keys()
        if missing:
            raise TemplateError(f"RQ's job hash no longer has {sorted(missing)}")
        return static

    def enqueue_on(self, pipe: Pipeline, job_id: str, args: Sequence[Any], description: str, at: str) -> None:
        """Queue the commands that enqueue one job (`at` from `timestamp()`), as RQ's enqueue_job would."""
        mapping: dict[Any, Any] = dict(self._fields)
        # RQ stores a job's call as its serializer's dump of (function, instance, args, kwargs), zlib-compressed.
        mapping["data"] = zlib.compress(self._serializer.dumps((self.func, None, tuple(args), {})))
        mapping["description"] = description
        mapping["created_at"] = at
        mapping["enqueued_at"] = at
        pipe.sadd(self.queue.redis_queues_keys, self.queue.key)
        pipe.hset(Job.key_for(job_id), mapping=mapping)
        pipe.rpush(self.queue.key, job_id)

    def enqueue_in_script(self, batch: Pipeline, job_id: str, args: Sequence[Any], description: str, at: str) -> None:
        """The same job, as one `@job` instruction for store/atomic.py's scripts: 9 arguments instead of ~50.

        Only for a batch handed to `ConditionalExecutor` (Redis itself knows no `@job`). The call is stored as
        RQ's serializer wrote it, uncompressed: RQ reads data that is not zlib's as is (Job.restore), and a ~70-byte
        call compresses to more bytes than it has.
        """
        data = self._serializer.dumps((self.func, None, tuple(args), {}))
        batch.execute_command(
            "@job", self.key, Job.key_for(job_id), self.queue.key, self.queue.redis_queues_keys, job_id, data,
            description, at)
