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
from runnerguard import logs
from runnerguard.queue.worker import build_worker

SWEEP_EVERY = 300
RECOVER_EVERY = 300
TRIM_EVERY = 3600
DASHBOARD_EVERY = 600  # stored dashboard summaries live a day; refolding every 10 minutes keeps renders warm
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
    if args.scheduler:
        return survive_outages(settings.redis_url, lambda: run_scheduler(
            settings.redis_url, github_configured=bool(settings.github_app_id), level=settings.log_level))
    names = [f"prewarm.{settings.host}"] if args.prewarm else (args.queues or list(settings.queues))
    if args.burst:
        build_worker(settings.redis_url, names).work(burst=True, logging_level=settings.log_level)
        return 0

    def work() -> bool:
        worker = build_worker(settings.redis_url, names)
        worker.work(with_scheduler=True, logging_level=settings.log_level)
        return worker.stop_was_requested  # a stop we were asked for (SIGTERM, SIGINT), not an outage

    return survive_outages(settings.redis_url, work)


def survive_outages(redis_url: str, run: Callable[[], bool | int]) -> int:
    """Run `run` again after Redis went away, once Redis answers: the process recovers by itself.

    RQ's loop tolerates a lost connection only while it waits for work; one lost in the middle of a task ends the
    worker. A supervisor (systemd, honcho) would restart it, but honcho stops the whole stack when one process
    exits, and nothing queued should wait on a restart policy.
    """
    probe = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    while True:
        try:
            if run() is True:
                return 0
        except redis.ConnectionError:
            pass  # RQ's teardown could not say goodbye: Redis is still away
        log.warning("lost Redis; waiting for it to come back")
        # RQ's signal handlers belong to the worker that just quit: while we wait, a stop request stops us.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        delay = 0.5
        while True:
            try:
                if probe.ping():
                    break
            except redis.RedisError:
                pass
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
