"""The periodic tasks, on RQ's cron scheduler, enqueued as JSON jobs of the task table like every other task.

RQ's CronJob enqueues with the default (pickle) serializer, which our workers refuse; this CronJob does the same
bookkeeping as RQ's (job history, cron registry) with the task table's serializer and options.

RQ's interval jobs run at start and then every interval after, per scheduler, with no lock: two schedulers (two
hosts) would enqueue everything twice. Here every scheduler ticks at the same slot boundaries (multiples of the
interval since the epoch) and enqueues a slot only if it claims it first (store/cron_slots.py), so one slot, one job.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime

from redis import Redis
from rq import cron_job_registry
from rq.cron import CronJob, CronScheduler
from rq.defaults import DEFAULT_CRON_JOB_HISTORY_LIMIT, DEFAULT_CRON_JOB_HISTORY_TTL
from rq.job import Job

from runnerguard.queue import tasks
from runnerguard.store import cron_slots

OWNER = f"{socket.gethostname()}:{os.getpid()}"  # who claimed a slot, for a person reading Redis


class TaskCronJob(CronJob):
    def __init__(self, spec: tasks.TaskSpec, interval: int) -> None:
        super().__init__(queue_name=spec.queue, func_name=spec.path, interval=interval, job_timeout=spec.timeout,
                         result_ttl=spec.result_ttl)
        self.spec = spec
        self.every = interval

    def get_next_enqueue_time(self) -> datetime:
        # The next slot boundary, the same on every host (RQ's: the last enqueue + interval, per scheduler).
        start = (cron_slots.slot_of(time.time(), self.every) + 1) * self.every
        return datetime.fromtimestamp(start, UTC)

    def enqueue(self, connection: Redis) -> Job | None:  # type: ignore[override]  # RQ ignores the answer
        """The task's job for the current slot, or None when another scheduler already enqueued it."""
        slot = cron_slots.slot_of(time.time(), self.every)
        if not cron_slots.claim(connection, self.spec.path, slot, interval=self.every, owner=OWNER):
            return None
        queue = tasks.queue(self.queue_name, connection)
        with connection.pipeline() as pipeline:
            job = queue.enqueue_call(self.spec.path, timeout=self.spec.timeout, result_ttl=self.spec.result_ttl,
                                     failure_ttl=self.spec.failure_ttl, pipeline=pipeline)
            at = job.enqueued_at.timestamp() if job.enqueued_at is not None else 0.0
            pipeline.zadd(self.job_history_key, {job.id: at})
            pipeline.zremrangebyrank(self.job_history_key, 0, -(DEFAULT_CRON_JOB_HISTORY_LIMIT + 1))
            pipeline.expire(self.job_history_key, DEFAULT_CRON_JOB_HISTORY_TTL)
            cron_job_registry.add(self.name, pipeline, enqueue_timestamp=at)
            pipeline.execute()
        return job


def scheduler(connection: Redis, periodic: list[tuple[tasks.TaskSpec, int]], *, level: str) -> CronScheduler:
    """A cron scheduler enqueueing each (task, every N seconds); several may run, on several hosts (slot claims)."""
    cron = CronScheduler(connection=connection, logging_level=level)
    for spec, every in periodic:
        cron.get_jobs().append(TaskCronJob(spec, every))
    return cron
