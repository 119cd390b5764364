"""Start an RQ worker for the configured queues (no task code here): `python worker.py [queue ...]`."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta

import redis
from redis.client import Pipeline
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.utils import now

from config import ConfigError, load_settings
from handlers import runtime
from runnerguard import logs

SWEEP_EVERY = 300
RECOVER_EVERY = 300
TRIM_EVERY = 3600
MAINTENANCE_EVERY = 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("queues", nargs="*", help="queues in priority order (default: RUNNERGUARD_QUEUES)")
    parser.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    parser.add_argument("--scheduler", action="store_true",
                        help="run the periodic tasks (rollback sweep, delivery recovery, retention) instead")
    parser.add_argument("--prewarm", action="store_true", help="serve this host's pre-warm queue (RUNNERGUARD_HOST)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        rt = runtime.Runtime.from_settings(settings)
    except ConfigError as exc:
        print(f"runnerguard worker: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    runtime.install(rt)
    if args.scheduler:
        return run_scheduler(settings.redis_url, github_configured=bool(settings.github_app_id),
                             level=settings.log_level)
    names = [f"prewarm.{settings.host}"] if args.prewarm else (args.queues or list(settings.queues))
    worker = build_worker(settings.redis_url, names)
    worker.work(burst=args.burst, with_scheduler=True, logging_level=settings.log_level)
    return 0


class RunnerguardWorker(SimpleWorker):
    """RQ's SimpleWorker, with heartbeats outside a pipeline sent at most once a second.

    RQ sends up to three stand-alone heartbeats per job (loop, dequeue, start), each a round trip that only pushes
    the worker key's expiry (worker_ttl + 60 s, minutes away) a little further. Sending one a second keeps the
    worker just as alive for monitoring and abandoned-job detection, and frees a quarter of the per-job round trips.
    """

    HEARTBEAT_EVERY = timedelta(seconds=1)
    SUSPENSION_CHECK_EVERY = 1.0  # seconds: `rq suspend` takes effect within a second instead of at the next job

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        last = getattr(self, "last_heartbeat", None)
        if pipeline is None and timeout is None and last is not None and now() - last < self.HEARTBEAT_EVERY:
            return
        super().heartbeat(timeout, pipeline)

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        # RQ marks the worker idle twice after each job; a stand-alone write of the state it already has is a
        # wasted round trip.
        if pipeline is None and getattr(self, "_state", None) == state:
            return
        super().set_state(state, pipeline)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        # RQ sends the job one more heartbeat here, a stand-alone round trip; in this worker the job finishes in
        # the same process a moment later, and its success or failure write follows straight away.
        job.ended_at = now()

    def check_for_suspension(self, burst: bool) -> None:
        checked = getattr(self, "_suspension_checked", 0.0)
        if time.monotonic() - checked < self.SUSPENSION_CHECK_EVERY:
            return
        self._suspension_checked = time.monotonic()
        super().check_for_suspension(burst)


def run_scheduler(redis_url: str, *, github_configured: bool, level: str) -> int:
    """RQ's cron scheduler: it only enqueues; the workers run the tasks (several schedulers may run: RQ locks)."""
    from rq.cron import CronScheduler

    from handlers import maintenance, recovery, rollback

    connection = redis.Redis.from_url(redis_url, health_check_interval=30)
    cron = CronScheduler(connection=connection, logging_level=level)
    cron.register(rollback.sweep, "github", interval=SWEEP_EVERY, job_timeout=600, result_ttl=3600)
    if github_configured:
        cron.register(recovery.recover_deliveries, "github", interval=RECOVER_EVERY, job_timeout=900, result_ttl=3600)
    cron.register(maintenance.trim, "events", interval=TRIM_EVERY, result_ttl=3600)
    cron.start()
    return 0


def build_worker(redis_url: str, queue_names: list[str]) -> SimpleWorker:
    """SimpleWorker runs tasks in this process instead of forking a child per job.

    Our tasks are short, idempotent and our own code; a fork per job (~10-15 ms) would cap a process at ~65 jobs/s,
    a fraction of what this does (bench/bench_ingest.py measures both). Crash isolation comes from RQ's
    abandoned-job handling and the retries instead.
    """
    connection = redis.Redis.from_url(redis_url, health_check_interval=30)
    # A job whose worker died (SIGKILL, OOM, power) is found by RQ's registry cleanup once its execution's TTL
    # (job monitoring interval 30 s + 60 s) has passed; cleaning every 20 s instead of RQ's 10 minutes gets it
    # retried within two minutes. Every task is idempotent, so a slow task mistaken for a dead one is harmless.
    return RunnerguardWorker([Queue(name, connection=connection) for name in queue_names], connection=connection,
                             maintenance_interval=MAINTENANCE_EVERY, job_monitoring_interval=30)


if __name__ == "__main__":
    sys.exit(main())
