"""How a worker runs a job: only tasks of the table, with their dependencies, recording a delivery's outcome.

A job names its function by dotted path; RQ would import and call whatever the path names. `TaskJob.func` looks
the path up in the task table instead: anything else is refused before any code of it is imported, moved to the
failed registry with the reason, and counted (`runnerguard_tasks_refused_total`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from redis.client import Pipeline
from rq import get_current_job
from rq.executions import ExecutionRegistry
from rq.job import Job
from rq.results import Result
from rq.utils import import_attribute

from runnerguard.errors import Permanent
from runnerguard.queue import tasks
from runnerguard.queue.deps import Deps
from runnerguard.store import deliveries, metrics

log = logging.getLogger("runnerguard.tasks")
REFUSED_TOTAL = "runnerguard_tasks_refused_total"


class UnknownTask(Permanent):
    """A job names a function outside the task table: never run."""


def _no_retry() -> None:
    job = get_current_job()
    if job is not None:
        job.retries_left = 0  # straight to the failed registry: retrying cannot help


def run_delivery_task(spec: tasks.TaskSpec, body: Callable[..., bool | None], guid: str, deps: Deps) -> None:
    """Load the delivery by id, run the body, record done / failed on the delivery.

    A body returns True when it recorded its own "done" (in the same write as its work), else None.
    """
    extra: dict[str, Any] = {"delivery_id": guid, "task": spec.name}
    try:
        delivery = deliveries.load(deps.redis, guid)
    except deliveries.BodyError as exc:
        # Its dictionary is missing or its bytes are damaged: no retry brings the body back; say so on the delivery.
        deliveries.mark_task(deps.redis, guid, spec.name, deliveries.FAILED, error=str(exc), now=deps.clock())
        log.error("delivery body unreadable", extra={**extra, "error": str(exc)[:200]})
        _no_retry()
        raise
    if delivery is None:
        # Past retention, or never recorded: nothing to do, and retrying will not bring it back.
        log.warning("delivery not found", extra=extra)
        return
    extra.update(event=delivery.event, action=delivery.action, repo=delivery.repo)
    try:
        marked = body(delivery, **deps.kwargs_for(body))
    except Permanent as exc:
        deliveries.mark_task(deps.redis, guid, spec.name, deliveries.FAILED, error=str(exc), now=deps.clock())
        log.warning("task failed for good", extra={**extra, "error": str(exc)[:200]})
        _no_retry()
        raise
    except Exception as exc:
        # Transient (Redis, network, GitHub) or a bug: RQ retries with backoff; the last failure stays recorded.
        deliveries.mark_task(deps.redis, guid, spec.name, deliveries.FAILED, error=f"{type(exc).__name__}: {exc}",
                             now=deps.clock())
        log.warning("task failed", extra={**extra, "error": type(exc).__name__})
        raise
    if not marked:
        deliveries.mark_task(deps.redis, guid, spec.name, deliveries.DONE, now=deps.clock())
    log.info("task done", extra=extra)


def bind(spec: tasks.TaskSpec, deps: Deps) -> Callable[..., Any]:
    """The callable RQ runs for `spec`: the body with its dependencies (and, for delivery tasks, the delivery)."""
    body = import_attribute(spec.path)
    if spec.takes_delivery:
        return lambda guid: run_delivery_task(spec, body, guid, deps)

    def run(*args: Any) -> Any:
        try:
            return body(*args, **deps.kwargs_for(body))
        except Permanent:
            _no_retry()
            raise

    return run


class TaskJob(Job):
    """RQ's Job, resolving its function through the task table; `deps` is set per worker (see worker.build_worker)."""

    deps: ClassVar[Deps | None] = None
    extra_tasks: ClassVar[Mapping[str, tasks.TaskSpec]] = {}

    @property
    def func(self) -> Callable[..., Any]:
        spec = tasks.spec_for(self.func_name) or self.extra_tasks.get(str(self.func_name))
        if spec is None or self.instance is not None:
            self.retries_left = 0
            if self.deps is not None:
                metrics.incr(self.deps.redis, REFUSED_TOTAL, {"reason": "unknown_task"})
            log.error("refused a job naming a function outside the task table",
                      extra={"task": str(self.func_name)[:200]})
            raise UnknownTask(f"{str(self.func_name)[:200]!r} is not in runnerguard's task table")
        if self.deps is None:
            raise RuntimeError("TaskJob.deps is not set: start workers with runnerguard.queue.worker.build_worker")
        return bind(spec, self.deps)

    def cleanup(self, ttl: int | None = None, pipeline: Pipeline | None = None, remove_from_queue: bool = True) -> None:
        # A finished job kept for 0 s (a delivery task: its delivery records the outcome) is deleted in the success
        # write itself. RQ's own delete first reads the job's status and its executions, each a stand-alone round
        # trip, to find what to remove; a task of this table has no dependents, group or rate limit, and the
        # worker's success write already removes its execution (cleanup_execution), so the keys are all it needs.
        if ttl == 0 and pipeline is not None and not remove_from_queue and not self.group_id \
                and not self.has_rate_limit:
            pipeline.delete(self.key, self.dependents_key, self.dependencies_key, Result.get_key(self.id),
                            ExecutionRegistry(job_id=self.id, connection=self.connection).key)
            return
        super().cleanup(ttl, pipeline=pipeline, remove_from_queue=remove_from_queue)


def job_class_for(deps: Deps, extra_tasks: Mapping[str, tasks.TaskSpec] | None = None) -> type[TaskJob]:
    """A TaskJob class bound to this worker's dependencies (and, for test-only workers, tasks of their own)."""
    return type("BoundTaskJob", (TaskJob,), {"deps": deps, "extra_tasks": dict(extra_tasks or {})})
