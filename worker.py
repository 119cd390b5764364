"""Start an RQ worker for the configured queues (no task code here): `python worker.py [queue ...]`."""

from __future__ import annotations

import argparse
import sys

import redis
from rq import Queue, SimpleWorker

from config import ConfigError, load_settings
from handlers import runtime
from runnerguard import logs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("queues", nargs="*", help="queues in priority order (default: RUNNERGUARD_QUEUES)")
    parser.add_argument("--burst", action="store_true", help="exit once the queues are empty")
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
    names = [f"prewarm.{settings.host}"] if args.prewarm else (args.queues or list(settings.queues))
    connection = redis.Redis.from_url(settings.redis_url, health_check_interval=30)
    queues = [Queue(name, connection=connection) for name in names]
    # SimpleWorker runs tasks in this process instead of forking a child per job. Our tasks are short, idempotent
    # and our own code; a fork per job (~10-15 ms) would cap a process at ~65 jobs/s, a quarter of what this does.
    # Crash isolation comes from RQ's abandoned-job handling and the retries instead.
    worker = SimpleWorker(queues, connection=connection)
    worker.work(burst=args.burst, with_scheduler=True, logging_level=settings.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
