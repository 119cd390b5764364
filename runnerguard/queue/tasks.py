"""The task table: every function a worker may run, with its queue, timeout, retries and TTLs, and one `enqueue`.

RQ stores a job's function as a dotted path in every queued, scheduled and failed job. A worker runs only paths in
this table (a job naming any other function is refused: see runnerguard/queue/worker.py), so a path that changes
keeps an alias here for as long as failed jobs are kept (FAILURE_TTL).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer

EVENTS = "events"  # the timeline and trigger checks: fast, no GitHub calls
GITHUB = "github"  # tasks that call GitHub (rate limited, slower)
PREWARM_PREFIX = "prewarm."  # the old per-host queues (issue #13 moved pre-warm to `events`; nothing routes here)
RETRY_INTERVALS = (2, 10, 60, 300)
# RQ keeps a finished job and its result this long (tasks that are not a delivery's: a tool may look at them).
RESULT_TTL = 60
# A delivery task's outcome is recorded on its delivery (its done mark), so RQ's copy is deleted at once, in the
# success write itself (TaskJob.cleanup: no read, no extra round trip). Kept 60 s, every finished task held its job
# hash, result stream and registry entry, ~2 KB a task, through the busiest minute (issue #18).
DELIVERY_RESULT_TTL = 0
FAILURE_TTL = 14 * 86400
# Jobs carry only ids and names, so JSON holds them all; pickle would let whoever writes a job run any code.
SERIALIZER = JSONSerializer
JOB_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class TaskSpec:
    """One task: `path` names the body in handlers/; `takes_delivery` bodies get the recorded delivery, by id."""

    name: str
    path: str
    queue: str
    timeout: int = 300
    retry: tuple[int, ...] = RETRY_INTERVALS
    result_ttl: int = RESULT_TTL
    failure_ttl: int = FAILURE_TTL
    takes_delivery: bool = False

    def rq_retry(self) -> Retry | None:
        return Retry(max=len(self.retry), interval=list(self.retry)) if self.retry else None

    def job_options(self) -> dict[str, object]:
        return {"timeout": self.timeout, "result_ttl": self.result_ttl, "failure_ttl": self.failure_ttl,
                "retry": self.rq_retry()}


def delivery_task(name: str, path: str, queue: str, *, retry: tuple[int, ...] = RETRY_INTERVALS) -> TaskSpec:
    """A task run on a recorded delivery (given its id), whose outcome the delivery records."""
    return TaskSpec(name, path, queue, retry=retry, result_ttl=DELIVERY_RESULT_TTL, takes_delivery=True)


# Delivery tasks (routed from webhooks; see runnerguard/queue/routing.py).
TIMINGS = delivery_task("timings", "handlers.timings.record_job", EVENTS)
ROLLBACK_CHECK = delivery_task("rollback", "handlers.rollback.evaluate_after_job", EVENTS)
ROLLBACK_PR = delivery_task("rollback-pr", "handlers.rollback.follow_pull_request", EVENTS)
# Makes the runner hosts' work items (runnerguard/store/work.py); the agents fetch them over HTTP.
PREWARM = delivery_task("prewarm", "handlers.prewarm.prewarm", EVENTS)
# A failed job's cause (annotations and the run come from GitHub, once): longer retries ride out a rate limit.
ATTRIBUTE = delivery_task("causes", "handlers.causes.attribute_job", GITHUB, retry=(10, 60, 600, 3600))
# GitHub work, queued by the services.
OPEN_ROLLBACK = TaskSpec("open_rollback", "handlers.rollback.open_rollback", GITHUB, timeout=600, result_ttl=0)
RESTORE_ROLLBACK = TaskSpec("restore_rollback", "handlers.rollback.restore_rollback", GITHUB, timeout=600,
                            result_ttl=3600)
MANUAL_ROLLBACK = TaskSpec("manual_rollback", "handlers.rollback.manual_rollback_task", GITHUB, result_ttl=3600)
BULK_REPLAY = TaskSpec("bulk_replay", "handlers.replay.run_bulk_replay", EVENTS, timeout=3600, result_ttl=0,
                       retry=())
# Notifications (issue #17): one fan-out per notice, then one delivery per notifier, each retried on its own.
NOTIFY_FAN_OUT = TaskSpec("notify", "handlers.notify.fan_out", GITHUB, timeout=60, result_ttl=600)
NOTIFY_SEND = TaskSpec("notify_send", "handlers.notify.send", GITHUB, timeout=120, result_ttl=600)
NOTIFY_TEST = TaskSpec("notify_test", "handlers.notify.send_test", GITHUB, timeout=120, result_ttl=600, retry=())
# Periodic (worker.py --scheduler).
SWEEP = TaskSpec("sweep", "handlers.rollback.sweep", GITHUB, timeout=600, result_ttl=3600, retry=())
RECOVER = TaskSpec("recover", "handlers.recovery.recover_deliveries", GITHUB, timeout=900, result_ttl=3600, retry=())
TRIM = TaskSpec("trim", "handlers.maintenance.trim", EVENTS, result_ttl=3600, retry=())
WARM_DASHBOARD = TaskSpec("warm_dashboard", "handlers.maintenance.warm_dashboard", EVENTS, result_ttl=600, retry=())
CHECK_HOSTS = TaskSpec("check_hosts", "handlers.hosts.check_hosts", EVENTS, timeout=120, result_ttl=600, retry=())
# The watchdog (each call it makes is claimed first, so a second worker or the next tick never repeats one).
WATCHDOG_TIMEOUTS = TaskSpec("watchdog_timeouts", "handlers.watchdog.sweep_timeouts", GITHUB, result_ttl=600,
                             retry=())
WATCHDOG_STRANDED = TaskSpec("watchdog_stranded", "handlers.watchdog.find_stranded", GITHUB, result_ttl=600,
                             retry=())
WATCHDOG_RERUN = TaskSpec("watchdog_rerun", "handlers.watchdog.rerun_runner_failures", GITHUB, result_ttl=600,
                          retry=())

# Tasks of recorded deliveries that a crash between RQ's pop and its bookkeeping lost (services/lost_tasks.py).
REQUEUE_LOST = TaskSpec("requeue_lost", "handlers.maintenance.requeue_lost", EVENTS, result_ttl=3600, retry=())

TASKS: dict[str, TaskSpec] = {spec.path: spec for spec in (
    TIMINGS, ROLLBACK_CHECK, ROLLBACK_PR, PREWARM, ATTRIBUTE, OPEN_ROLLBACK, RESTORE_ROLLBACK, MANUAL_ROLLBACK,
    BULK_REPLAY, SWEEP, RECOVER, TRIM, WARM_DASHBOARD, WATCHDOG_TIMEOUTS, WATCHDOG_STRANDED, WATCHDOG_RERUN,
    NOTIFY_FAN_OUT, NOTIFY_SEND, NOTIFY_TEST, CHECK_HOSTS, REQUEUE_LOST,
)}
# Old dotted path -> current one, kept for FAILURE_TTL after a rename (a requeued failed job still runs).
ALIASES: dict[str, str] = {}


def spec_for(path: str | None) -> TaskSpec | None:
    """The task a job's dotted path names, through its alias; None for anything outside the table."""
    if path is None:
        return None
    return TASKS.get(ALIASES.get(path, path))


def job_id_for(guid: str, task_name: str, suffix: str = "") -> str:
    """RQ job ids allow letters, digits, '_' and '-' only; one job per delivery and task (and replay)."""
    return f"{guid}_{JOB_ID_UNSAFE.sub('-', task_name)}{suffix}"


def queue(name: str, connection: redis.Redis) -> Queue:
    return Queue(name, connection=connection, serializer=SERIALIZER)


def enqueue(spec: TaskSpec, *ids: str | None, connection: redis.Redis, job_id: str | None = None,
            queue_name: str | None = None) -> Job:
    """Queue one task with the options of its table row; tasks carry only ids and names."""
    return queue(queue_name or spec.queue, connection).enqueue_call(
        spec.path, args=ids, job_id=job_id, **spec.job_options(),  # type: ignore[arg-type]
    )


def is_pending(job_id: str, *, connection: redis.Redis) -> bool:
    """A job with this id is queued, running or scheduled (a retry waiting), so queueing it again would repeat it."""
    if not Job.exists(job_id, connection=connection):
        return False
    try:
        status = Job.fetch(job_id, connection=connection, serializer=SERIALIZER).get_status().value
    except Exception:
        return False
    return status in ("queued", "started", "scheduled", "deferred")


def wait_for(job_id: str, *, connection: redis.Redis, timeout: float, poll: float = 0.5) -> tuple[str, Any]:
    """Wait until a queued task has finished or failed (or `timeout` passed): (its status, its result or error)."""
    deadline = time.monotonic() + timeout
    while True:
        job = Job.fetch(job_id, connection=connection, serializer=SERIALIZER)
        status = job.get_status().value
        if status == "finished":
            return status, job.return_value()
        if status in ("failed", "stopped", "canceled"):
            result = job.latest_result()
            error = ((result.exc_string if result is not None else None) or "").strip().splitlines()
            return status, error[-1] if error else status
        if time.monotonic() >= deadline:
            return status, None
        time.sleep(poll)
