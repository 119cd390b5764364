"""Start an RQ worker for the configured queues (no task code here): `python worker.py [queue ...]`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Callable

import redis

from config import ConfigError, load_settings
from handlers import runtime
from handlers.rq_worker import build_worker
from runnerguard import logs
from runnerguard.redis_health import write_refusal
from runnerguard.retention import trim_all

SWEEP_EVERY = 300
RECOVER_EVERY = 300
TRIM_EVERY = 3600
DASHBOARD_EVERY = 600  # stored dashboard summaries live a day; refolding every 10 minutes keeps renders warm
TRIM_WHILE_WAITING_EVERY = 60  # seconds: retention while Redis refuses writes (no RQ job can start then)
log = logging.getLogger("runnerguard.worker")


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
    def retention() -> None:
        # Index trims only (no write a full Redis refuses): run here, since no RQ job can even start meanwhile.
        trim_all(rt.redis, settings, now=time.time())

    if args.scheduler:
        return survive_outages(settings.redis_url, lambda: run_scheduler(
            settings.redis_url, github_configured=bool(settings.github_app_id), level=settings.log_level),
            while_waiting=retention)
    names = [f"prewarm.{settings.host}"] if args.prewarm else (args.queues or list(settings.queues))
    if args.burst:
        build_worker(settings.redis_url, names).work(burst=True, logging_level=settings.log_level)
        return 0

    def work() -> bool:
        worker = build_worker(settings.redis_url, names)
        worker.work(with_scheduler=True, logging_level=settings.log_level)
        return worker.stop_was_requested  # a stop we were asked for (SIGTERM, SIGINT), not an outage

    return survive_outages(settings.redis_url, work, while_waiting=None if args.prewarm else retention)


def survive_outages(redis_url: str, run: Callable[[], bool | int],
                    while_waiting: Callable[[], None] | None = None) -> int:
    """Run `run` again after Redis went away or refused writes, once it takes them: the process recovers by itself.

    RQ's loop tolerates a lost connection only while it waits for work; one lost in the middle of a task ends the
    worker. A full Redis (maxmemory, noeviction) answers PING but refuses RQ's own bookkeeping with OOM errors, and
    a failed-over replica refuses it as read-only: both are outages too. A supervisor (systemd, honcho) would
    restart the process, but honcho stops the whole stack when one process exits, and nothing queued should wait
    on a restart policy. `while_waiting` runs at once and then every minute during the wait (retention).
    """
    probe = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    while True:
        try:
            if run() is True:
                return 0
        except (redis.ConnectionError, redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError):
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
            if while_waiting is not None and time.monotonic() - last_chore >= TRIM_WHILE_WAITING_EVERY:
                last_chore = time.monotonic()
                try:
                    while_waiting()
                except redis.RedisError as exc:
                    log.warning("retention while waiting failed: %s", type(exc).__name__)
            time.sleep(delay)
            delay = min(delay * 2, 10)


def run_scheduler(redis_url: str, *, github_configured: bool, level: str) -> bool:
    """RQ's cron scheduler: it only enqueues; the workers run the tasks (several schedulers may run: RQ locks)."""
    from rq.cron import CronScheduler

    from handlers import maintenance, recovery, rollback

    connection = redis.Redis.from_url(redis_url, health_check_interval=30)
    cron = CronScheduler(connection=connection, logging_level=level)
    cron.register(rollback.sweep, "github", interval=SWEEP_EVERY, job_timeout=600, result_ttl=3600)
    if github_configured:
        cron.register(recovery.recover_deliveries, "github", interval=RECOVER_EVERY, job_timeout=900, result_ttl=3600)
    cron.register(maintenance.trim, "events", interval=TRIM_EVERY, result_ttl=3600)
    cron.register(maintenance.warm_dashboard, "events", interval=DASHBOARD_EVERY, result_ttl=600)
    cron.start()
    return True  # start() returns only when asked to stop


if __name__ == "__main__":
    sys.exit(main())
