"""What the dashboard and /metrics show of the queues: depth, failed registries and their newest entries."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry

from runnerguard.queue import tasks


@dataclass(frozen=True)
class FailedTask:
    queue: str
    id: str
    guid: str | None  # the delivery (or pool) the task served: its first argument
    task: str
    ended_at: float | None
    error: str
    delivery: str | None = None  # the delivery, only for tasks that serve one (open_rollback's first id is a pool)


def delivery_of(func_name: str, job_id: str, first: str | None) -> str | None:
    """The delivery a failed task served: its first id, when the task is one of those that take a delivery."""
    spec = tasks.spec_for(func_name)
    if spec is not None:
        return first if spec.takes_delivery else None
    # Outside the table (refused by the worker): a delivery task's job id starts with its delivery (job_id_for).
    return first if first and job_id.startswith(first + "_") else None


def _names(client: redis.Redis, configured: tuple[str, ...]) -> list[str]:
    return sorted({q.name for q in Queue.all(connection=client)} | set(configured))


def queue_rows(client: redis.Redis, configured: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """(queue, depth, failed) for every queue RQ knows of and every configured one (even before first use)."""
    rows = []
    for name in _names(client, configured):
        queue = tasks.queue(name, client)
        rows.append((name, queue.count, FailedJobRegistry(queue=queue).count))
    return rows


def failed_tasks(client: redis.Redis, configured: tuple[str, ...], *, limit: int) -> list[FailedTask]:
    """The newest entries of every queue's failed registry, newest first."""
    found: list[FailedTask] = []
    for name in _names(client, configured):
        registry = FailedJobRegistry(queue=tasks.queue(name, client))
        ids = registry.get_job_ids(0, limit - 1)
        for job in Job.fetch_many(ids, connection=client, serializer=tasks.SERIALIZER):
            if job is None:
                continue
            try:
                args, func_name = job.args, job.func_name or ""
            except Exception:
                args, func_name = (), "<unreadable>"
            result = job.latest_result()
            error = ((result.exc_string if result is not None else None) or "").strip().splitlines()
            first = args[0] if args and isinstance(args[0], str) else None
            found.append(FailedTask(
                queue=name, id=job.id, guid=first,
                task=func_name.rsplit(".", 1)[-1], ended_at=job.ended_at.timestamp() if job.ended_at else None,
                error=error[-1][:200] if error else "", delivery=delivery_of(func_name, job.id, first),
            ))
    found.sort(key=lambda row: row.ended_at or 0.0, reverse=True)
    return found[:limit]
