"""RQ jobs that nothing will ever run: gone, or saying "queued" while in no queue.

A worker serving several queues pops a job with BLPOP and registers it as started in later commands. A worker
killed between the two, or a primary lost to a Sentinel failover with only the pop replicated, leaves the job's
hash saying "queued" in no queue and no registry: RQ's own cleanups look at registries only, so it never runs. A
queued job is therefore checked against its queue's list, not only for existence.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis
from rq import Queue
from rq.job import Job, JobStatus

from runnerguard.queue import tasks

MISSING, ORPHANED = "missing", "orphaned"
FETCH_BATCH = 500
SCAN_CHUNK = 1000
# A live worker writes "started" a round trip or two after its pop; a job still queued and unlisted this long after
# the queues were read is not in flight.
SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class Unrunnable:
    job_id: str
    why: str  # MISSING: no job hash; ORPHANED: queued, in no queue
    origin: str = ""  # the queue an orphan belongs to


def _queued_origins(client: redis.Redis, job_ids: list[str]) -> tuple[list[str], dict[str, str]]:
    """(ids with no job hash, {id: origin queue} of the jobs whose status is queued)."""
    missing: list[str] = []
    queued: dict[str, str] = {}
    for start in range(0, len(job_ids), FETCH_BATCH):
        batch = job_ids[start:start + FETCH_BATCH]
        for job_id, job in zip(batch, Job.fetch_many(batch, connection=client, serializer=tasks.SERIALIZER),
                               strict=True):
            if job is None:
                missing.append(job_id)
            elif job.get_status(refresh=False) == JobStatus.QUEUED:
                queued[job_id] = job.origin
    return missing, queued


def _listed(queue: Queue, wanted: set[str]) -> set[str]:
    """Which of `wanted` are in the queue's list. Read from the tail backwards, a chunk at a time: workers pop at the
    head, which leaves the negative index of every remaining id as it was, so no id is skipped while they work."""
    found: set[str] = set()
    chunks = queue.count // SCAN_CHUNK + 2  # pushes meanwhile shift ids towards the head: at worst read twice
    for n in range(chunks):
        ids = queue.get_job_ids(offset=-(n + 1) * SCAN_CHUNK, length=SCAN_CHUNK)
        found.update(wanted.intersection(ids))
        if len(found) == len(wanted) or len(ids) < SCAN_CHUNK:
            break
    return found


def unrunnable(client: redis.Redis, job_ids: Iterable[str], *, settle: float = SETTLE_SECONDS,
               sleep: Callable[[float], None] = time.sleep) -> list[Unrunnable]:
    """The jobs among `job_ids` that no queue, registry or worker will run. Jobs started, scheduled, finished or
    failed are RQ's to handle (a dead worker's started job is retried once its execution expires)."""
    ids = list(dict.fromkeys(job_ids))
    missing, queued = _queued_origins(client, ids)
    unlisted: dict[str, str] = {}
    by_queue: dict[str, set[str]] = {}
    for job_id, origin in queued.items():
        by_queue.setdefault(origin, set()).add(job_id)
    for origin, wanted in by_queue.items():
        listed = _listed(tasks.queue(origin, client), wanted)
        unlisted.update({job_id: origin for job_id in wanted - listed})
    orphans: list[Unrunnable] = []
    if unlisted:
        sleep(settle)  # a job popped while we read is "started" by now
        _, still_queued = _queued_origins(client, list(unlisted))
        for job_id, origin in still_queued.items():
            if tasks.queue(origin, client).get_job_position(job_id) is None:
                orphans.append(Unrunnable(job_id, ORPHANED, origin))
    return [Unrunnable(job_id, MISSING) for job_id in missing] + orphans


def requeue_orphan(client: redis.Redis, orphan: Unrunnable) -> None:
    """Put an orphan back at the tail of its queue, as RQ's enqueue would have left it (its hash is intact)."""
    tasks.queue(orphan.origin, client).push_job_id(orphan.job_id)
