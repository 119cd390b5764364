"""The RQ worker runnerguard runs: SimpleWorker (no fork per job), tuned for short idempotent tasks."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from types import FrameType
from typing import Any

import redis
from redis.client import Pipeline
from rq import Queue, SimpleWorker, Worker
from rq.executions import Execution
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers
from rq.utils import now
from rq.worker import WorkerStatus

from runnerguard.errors import Permanent
from runnerguard.queue import tasks
from runnerguard.queue.deps import Deps
from runnerguard.queue.runner import job_class_for
from runnerguard.store.redis_health import write_refusal

log = logging.getLogger("runnerguard.worker")
MAINTENANCE_EVERY = 20  # seconds between RQ registry cleanups, which retry the tasks of dead workers
MONITORING_EVERY = 15  # seconds between heartbeats of a running task
CHORE_WHILE_WAITING_EVERY = 60  # seconds: retention while Redis refuses writes (no RQ job can start then)


class RunnerguardWorker(SimpleWorker):
    """RQ's SimpleWorker, with heartbeats outside a pipeline sent at most once a second.

    RQ sends up to three stand-alone heartbeats per job (loop, dequeue, start), each a round trip that only pushes
    the worker key's expiry (worker_ttl + 60 s, minutes away) a little further. Sending one a second keeps the
    worker just as alive for monitoring and abandoned-job detection, and frees a quarter of the per-job round trips.
    """

    HEARTBEAT_EVERY = timedelta(seconds=1)
    stop_was_requested = False
    SUSPENSION_CHECK_EVERY = 1.0  # seconds: `rq suspend` takes effect within a second instead of at the next job

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        last = getattr(self, "last_heartbeat", None)
        if pipeline is None and timeout is None and last is not None and now() - last < self.HEARTBEAT_EVERY:
            return
        super().heartbeat(timeout, pipeline)

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        # RQ marks the worker idle twice after each job; a stand-alone write of the state it already has is a
        # wasted round trip.
        if pipeline is None and getattr(self, "_state", None) == state and not self._idle_unwritten:
            return
        self._idle_unwritten = False
        super().set_state(state, pipeline)

    # --- "idle" is written only when the worker really waits -----------------------------------------------------
    # After each job RQ writes the state "idle" (a stand-alone round trip), then dequeues the next job and writes
    # "busy". While work is waiting that flip is invisible to anyone and costs one round trip in eleven per job. The
    # worker stays "busy" from job to job and says "idle" once its queues are empty.
    _idle_unwritten = False

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        if self._idle_unwritten and not self.should_run_maintenance_tasks:
            try:
                found = self.queue_class.dequeue_any(
                    self._ordered_queues, None, connection=self.connection, job_class=self.job_class,
                    serializer=self.serializer, death_penalty_class=self.death_penalty_class,
                )
            except (redis.ConnectionError, redis.TimeoutError):
                found = None  # RQ's own dequeue below waits for Redis and retries
            if found is not None:
                job, queue = found
                self.reorder_queues(reference_queue=queue)
                job.redis_server_version = self.get_redis_server_version()
                self.heartbeat()
                return found
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        # RQ sends the job one more heartbeat here, a stand-alone round trip; in this worker the job finishes in
        # the same process a moment later, and its success or failure write follows straight away.
        job.ended_at = now()

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        # A permanent error (a payload lacking what its task needs) was logged in one line with its reason by the
        # task runner; RQ's traceback would only bury that line. Other errors keep RQ's full report.
        if len(exc_info) > 1 and isinstance(exc_info[1], Permanent):
            call_exception_handlers(self._exc_handlers, job, *exc_info)
            return
        super().handle_exception(job, *exc_info)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        # RQ records a stop request only when it arrives mid-task (`_stop_requested`); one that arrives while the
        # worker waits for work just ends the loop, which from outside looks the same as losing Redis. Remember
        # every request so worker.py exits instead of waiting for a Redis that never went away.
        self.stop_was_requested = True
        super().request_stop(signum, frame)

    def check_for_suspension(self, burst: bool) -> None:
        checked = getattr(self, "_suspension_checked", 0.0)
        if time.monotonic() - checked < self.SUSPENSION_CHECK_EVERY:
            return
        self._suspension_checked = time.monotonic()
        super().check_for_suspension(burst)

    # --- a dead worker's task is retried within two minutes ---------------------------------------------------------
    # RQ's SimpleWorker marks a running task alive for its whole timeout + 60 s (6 minutes here) and, when idle,
    # waits on the queue for worker_ttl - 15 s between registry cleanups: a task whose worker was SIGKILLed came
    # back after ~7 minutes. Instead, as RQ's forking Worker does, a running task is kept alive by a heartbeat every
    # 15 s (monitoring interval + 60 s of grace), and the idle wait is cut to the cleanup interval.

    @property
    def dequeue_timeout(self) -> int:
        return MAINTENANCE_EVERY

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return int(Worker.get_heartbeat_ttl(self, job, working_time))

    # --- a task is "started" in the same write that registers its execution ---------------------------------------
    # RQ writes the started registry (prepare_execution) and the job's "started" status (prepare_job_execution) in
    # two round trips. A worker killed, or a primary lost to a failover, between the two leaves a registry entry for
    # a job still saying "queued"; RQ's cleanup skips such an entry as a leftover and drops it, and the job is then
    # in no queue and no registry: never retried (found in the three-host Sentinel run, a `rollback` task lost).
    # Writing the status with the registry entry, in one MULTI, makes every prefix of the worker's writes one RQ
    # recovers from: queued in the queue, or started with an execution whose expiry retries it.

    def prepare_execution(self, job: Job) -> Execution:
        with self.connection.pipeline() as pipeline:
            heartbeat_ttl = self.get_heartbeat_ttl(job)
            execution = Execution.create(job, heartbeat_ttl, pipeline=pipeline, worker_name=self.name)
            self.executions[execution.id] = execution
            self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
            job.prepare_for_execution(self.name, pipeline=pipeline)
            pipeline.execute()
        return execution

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        self._running: tuple[Job, Execution] | None = (job, execution)
        self._ensure_heartbeat_thread()
        try:
            self.perform_job(job, queue, execution)
        finally:
            self._running = None
        self._state = WorkerStatus.IDLE
        self._idle_unwritten = True  # written by the dequeue once the queues are empty (above)

    def _ensure_heartbeat_thread(self) -> None:
        # One long-lived thread, not one per task: starting a thread per task would cost more than the task.
        if getattr(self, "_beat", None) is None:
            self._beat = threading.Thread(target=self._keep_running_task_alive, name="rq-heartbeat", daemon=True)
            self._beat.start()

    def _keep_running_task_alive(self) -> None:
        while True:
            time.sleep(self.job_monitoring_interval)
            running: tuple[Job, Execution] | None = getattr(self, "_running", None)
            if running is None:
                continue
            try:
                self.maintain_heartbeats(*running)
            except (redis.RedisError, AttributeError):
                pass  # Redis away, or the task finished meanwhile: the next beat or the cleanup sorts it out


def build_worker(connection: redis.Redis, queue_names: list[str], deps: Deps, *,
                 worker_class: type[RunnerguardWorker] | None = None,
                 extra_tasks: Mapping[str, tasks.TaskSpec] | None = None) -> RunnerguardWorker:
    """SimpleWorker runs tasks in this process instead of forking a child per job.

    Our tasks are short, idempotent and our own code; a fork per job (~10-15 ms) would cap a process at ~65 jobs/s,
    a fraction of what this does (bench/bench_ingest.py measures both). Crash isolation comes from RQ's
    abandoned-job handling and the retries instead. Jobs are JSON, and only the task table's functions run.
    """
    job_class = job_class_for(deps, extra_tasks)
    # A task whose worker died (SIGKILL, OOM, power) is found by RQ's registry cleanup once its heartbeat lapses
    # (15 s + 60 s); cleaning every 20 s instead of RQ's 10 minutes gets it retried within two minutes.
    queues = [Queue(name, connection=connection, job_class=job_class, serializer=tasks.SERIALIZER)
              for name in queue_names]
    return (worker_class or RunnerguardWorker)(
        queues, connection=connection, job_class=job_class, serializer=tasks.SERIALIZER,
        maintenance_interval=MAINTENANCE_EVERY, job_monitoring_interval=MONITORING_EVERY)


# What ends a run as an outage to wait out. redis-py's TimeoutError is not a ConnectionError: a primary whose host
# vanished without closing its sockets answers a read with it, and the scheduler (which, unlike RQ's worker loop,
# lets it through) exited on it on every host in the three-host run, so no periodic task ran after the cut.
OUTAGES = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.OutOfMemoryError,
           redis.exceptions.ReadOnlyError)


def survive_outages(probe: redis.Redis | str, run: Callable[[], bool | int],
                    while_waiting: Callable[[], None] | None = None) -> int:
    """Run `run` again after Redis went away or refused writes, once it takes them: the process recovers by itself.

    RQ's loop tolerates a lost connection only while it waits for work; one lost in the middle of a task ends the
    worker. A full Redis (maxmemory, noeviction) answers PING but refuses RQ's own bookkeeping with OOM errors, and
    a failed-over replica refuses it as read-only: both are outages too. A supervisor (systemd, honcho) would
    restart the process, but honcho stops the whole stack when one process exits, and nothing queued should wait
    on a restart policy. `while_waiting` runs at once and then every minute during the wait (retention).
    `probe` is a client with short timeouts (`connection.connect(settings, socket_timeout=2)`), or a URL.
    """
    if isinstance(probe, str):
        probe = redis.Redis.from_url(probe, socket_connect_timeout=2, socket_timeout=2)
    while True:
        try:
            if run() is True:
                return 0
        except OUTAGES:
            pass  # RQ's teardown could not say goodbye: Redis is still away, or still refuses writes
        refusal = write_refusal(probe)
        log.warning("lost Redis; waiting for it to come back" if refusal in (None, "down")
                    else f"Redis refuses writes ({refusal}); waiting for it to take them again")
        # RQ's signal handlers belong to the worker that just quit: while we wait, a stop request stops us.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        delay = 0.5
        last_chore = float("-inf")
        while write_refusal(probe) is not None:
            if while_waiting is not None and time.monotonic() - last_chore >= CHORE_WHILE_WAITING_EVERY:
                last_chore = time.monotonic()
                try:
                    while_waiting()
                except redis.RedisError as exc:
                    log.warning("retention while waiting failed: %s", type(exc).__name__)
            time.sleep(delay)
            delay = min(delay * 2, 10)
