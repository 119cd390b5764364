"""Routing: (event, action) -> the tasks a delivery fans out to, and the queues they go to. One table, no imports
of the task bodies (the web tier routes by the task table's dotted paths; only workers import the bodies)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from config.policy import Policy
from runnerguard.domain.events import WorkflowJobEvent
from runnerguard.domain.pools import pools_for
from runnerguard.queue import tasks

# A route's queues may depend on the event: pre-warm is queued only for a job some host has something to warm for.
QueueChooser = Callable[[WorkflowJobEvent | None, Policy], Sequence[str]]


@dataclass(frozen=True)
class Route:
    event: str
    action: str | None
    spec: tasks.TaskSpec
    queues: QueueChooser | None = None
    # A route that applies to some deliveries only (its task keeps its plain name, on its own queue).
    when: Callable[[WorkflowJobEvent | None, Policy], bool] | None = None

    @property
    def needs_event(self) -> bool:
        return self.queues is not None or self.when is not None

    @property
    def name(self) -> str:
        return self.spec.name

    def queues_for(self, job: WorkflowJobEvent | None, policy: Policy) -> list[str]:
        if self.when is not None and not self.when(job, policy):
            return []
        if self.queues is None:
            return [self.spec.queue]
        return list(self.queues(job, policy))


def prewarm_queues(job: WorkflowJobEvent | None, policy: Policy) -> list[str]:
    """The central `events` queue when a host serving one of the job's pools has a cache or command for it."""
    if job is None:
        return []
    pools = pools_for(job.labels, policy.pools)
    repo = job.repo if job.repo_is_safe else None
    for pool in policy.pools:
        if pool.name in pools and pool.hosts and any(policy.prewarm_specs_for([pool.name], repo)):
            return [tasks.PREWARM.queue]
    return []


def needs_cause(job: WorkflowJobEvent | None, policy: Policy) -> bool:
    """A failed job gets a cause (in a pool or not: a hosted job may be another's twin); with `count_forks = false`
    a pool's other finished jobs are checked for a fork's run too."""
    if job is None:
        return False
    if job.conclusion in ("failure", "timed_out", "cancelled"):
        return True
    return not policy.rollback.failure_rate.counting.count_forks and bool(pools_for(job.labels, policy.pools))


ROUTES: tuple[Route, ...] = (
    Route("workflow_job", None, tasks.TIMINGS),
    Route("workflow_job", "completed", tasks.ROLLBACK_CHECK),
    Route("workflow_job", "completed", tasks.ATTRIBUTE, when=needs_cause),
    Route("pull_request", "closed", tasks.ROLLBACK_PR),
    # On the central worker's `events` queue: it makes work items; the runner hosts fetch them over HTTP.
    Route("workflow_job", "queued", tasks.PREWARM, queues=prewarm_queues),
)


class Router:
    """The routes of the task table; tests may build one with other routes."""

    def __init__(self, routes: Sequence[Route] = ROUTES) -> None:
        self._routes = tuple(routes)

    def routes_for(self, event: str, action: str | None) -> list[Route]:
        return [r for r in self._routes if r.event == event and (r.action is None or r.action == action)]
