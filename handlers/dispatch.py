"""Turn a delivery into RQ jobs (which tasks, on which queues), for the intake and for replays alike."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import Pipeline
from rq import Queue, Retry

from config import Policy
from handlers.job_template import JobTemplate, timestamp
from handlers.routing import Router

JOB_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
GITHUB_QUEUE = "github"  # tasks that call GitHub (rate limited, slower), apart from the timeline's "events"
TASK_RETRY = Retry(max=4, interval=[2, 10, 60, 300])
TASK_TIMEOUT = 300
# The delivery records each task's outcome; RQ keeps its own result only briefly. Not 0: deleting a finished job
# at once costs RQ seven stand-alone round trips (a status read and an execution scan), expiring it costs none.
RESULT_TTL = 60
FAILURE_TTL = 14 * 86400


def job_id_for(guid: str, task_name: str, suffix: str = "") -> str:
    """RQ job ids allow letters, digits, '_' and '-' only; one job per delivery and task (and replay)."""
    return f"{guid}_{JOB_ID_UNSAFE.sub('-', task_name)}{suffix}"


@dataclass(frozen=True)
class PlannedJob:
    template: JobTemplate
    job_id: str
    guid: str
    description: str
    route: str = ""


@dataclass(frozen=True)
class Plan:
    task_names: tuple[str, ...]
    jobs: tuple[PlannedJob, ...]

    def without(self, routes: frozenset[str]) -> Plan:
        """The plan minus the jobs of these routes (what a Redis near its memory budget sheds)."""
        jobs = tuple(job for job in self.jobs if job.route not in routes)
        names = tuple(name for name in self.task_names if name.split("@", 1)[0] not in routes)
        return Plan(names, jobs)

    def enqueue_on(self, pipe: Pipeline) -> None:
        at = timestamp()
        for job in self.jobs:
            job.template.enqueue_on(pipe, job.job_id, (job.guid,), job.description, at)


class Dispatcher:
    """Keeps one RQ Queue and one job template per (task, queue), so planning costs no round trip and no RQ Job."""

    def __init__(self, client: redis.Redis, router: Router, policy: Policy) -> None:
        self.redis = client
        self.router = router
        self.policy = policy
        self._queues: dict[str, Queue] = {}
        self._templates: dict[tuple[str, str], JobTemplate] = {}

    def queue(self, name: str) -> Queue:
        if name not in self._queues:
            self._queues[name] = Queue(name, connection=self.redis)
        return self._queues[name]

    def template(self, task_path: str, queue_name: str) -> JobTemplate:
        key = (task_path, queue_name)
        if key not in self._templates:
            # Two threads may build the same template at once; both are equal, the last one stays.
            self._templates[key] = JobTemplate(
                self.queue(queue_name), task_path, timeout=TASK_TIMEOUT, result_ttl=RESULT_TTL,
                failure_ttl=FAILURE_TTL, retry=TASK_RETRY,
            )
        return self._templates[key]

    def plan(
        self, guid: str, event: str, action: str | None, payload: Mapping[str, Any], *, suffix: str = ""
    ) -> Plan:
        task_names: list[str] = []
        jobs: list[PlannedJob] = []
        for route in self.router.routes_for(event, action):
            for queue_name in route.queues_for(payload, self.policy):
                task_name = route.name if queue_name == route.queues else f"{route.name}@{queue_name}"
                task_names.append(task_name)
                jobs.append(PlannedJob(self.template(route.task_path, queue_name),
                                       job_id_for(guid, task_name, suffix), guid, f"{task_name} {guid}",
                                       route.name))
        return Plan(tuple(task_names), tuple(jobs))
