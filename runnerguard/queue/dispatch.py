"""Turn a delivery into RQ jobs (which tasks, on which queues), for the intake and for replays alike."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import Pipeline
from rq import Queue

from config import Policy
from runnerguard.domain.events import WorkflowJobEvent
from runnerguard.domain.timeline import PayloadError
from runnerguard.queue import tasks
from runnerguard.queue.job_template import JobTemplate, timestamp
from runnerguard.queue.routing import Router
from runnerguard.queue.tasks import job_id_for

__all__ = ["Dispatcher", "Plan", "job_id_for"]


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

    def enqueue_in_script(self, batch: Pipeline) -> None:
        """`enqueue_on` for a batch run by store/atomic.py's scripts (the intake's): the static fields stay in Redis."""
        at = timestamp()
        for job in self.jobs:
            job.template.enqueue_in_script(batch, job.job_id, (job.guid,), job.description, at)


def job_event(event: str, payload: Mapping[str, Any]) -> WorkflowJobEvent | None:
    """The typed workflow_job event for routing, or None (another event, or a payload the timeline task will
    refuse with its reason: routing never fails a delivery that was signed and recorded)."""
    if event != "workflow_job":
        return None
    try:
        return WorkflowJobEvent.parse(payload)
    except PayloadError:
        return None


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
            self._queues[name] = tasks.queue(name, self.redis)
        return self._queues[name]

    def template(self, spec: tasks.TaskSpec, queue_name: str) -> JobTemplate:
        key = (spec.path, queue_name)
        if key not in self._templates:
            # Two threads may build the same template at once; both are equal, the last one stays.
            self._templates[key] = JobTemplate(self.queue(queue_name), spec.path, **spec.job_options())
        return self._templates[key]

    def plan(
        self, guid: str, event: str, action: str | None, payload: Mapping[str, Any], *, suffix: str = "",
        job: WorkflowJobEvent | None = None,
    ) -> Plan:
        routes = self.router.routes_for(event, action)
        if job is None and any(route.needs_event for route in routes):
            job = job_event(event, payload)
        task_names: list[str] = []
        jobs: list[PlannedJob] = []
        for route in routes:
            for queue_name in route.queues_for(job, self.policy):
                # a chooser that picks the task's own queue (or none) keeps the plain task name
                task_name = (route.name if route.queues is None or queue_name == route.spec.queue
                             else f"{route.name}@{queue_name}")
                task_names.append(task_name)
                jobs.append(PlannedJob(self.template(route.spec, queue_name),
                                       job_id_for(guid, task_name, suffix), guid, f"{task_name} {guid}",
                                       route.name))
        return Plan(tuple(task_names), tuple(jobs))
