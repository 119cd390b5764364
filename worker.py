"""Start an RQ worker for the configured queues (no task code here): `python worker.py [queue ...]`.

`python worker.py --prewarm` is the runner host's agent instead: an HTTP client of the web tier (no Redis).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

import redis

from config import ConfigError, Settings, load_agent_settings, load_policy, load_settings
from runnerguard import logs
from runnerguard.agent import service as agent
from runnerguard.queue import cron, tasks
from runnerguard.queue.deps import Deps
from runnerguard.queue.worker import build_worker, survive_outages
from runnerguard.services import retention
from runnerguard.store import connection

SWEEP_EVERY = 300
RECOVER_EVERY = 300
TRIM_EVERY = 3600
CHECK_HOSTS_EVERY = 60  # a host is down 600 s after its last report: told within a minute of that
WATCHDOG_EVERY = 60  # a hung job is cancelled within a minute or two of passing its pool's max_run
STRANDED_EVERY = 300  # each job is asked about at most every 30 minutes; this only bounds the delay
REQUEUE_LOST_EVERY = 300  # at most; a task lost between RQ's pop and its bookkeeping runs within 1.5 x the grace
DASHBOARD_EVERY = 600  # stored dashboard summaries live a day; refolding every 10 minutes keeps renders warm
log = logging.getLogger("runnerguard.worker")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("queues", nargs="*", help="queues in priority order (default: RUNNERGUARD_QUEUES)")
    parser.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    parser.add_argument("--scheduler", action="store_true",
                        help="run the periodic tasks (rollback sweep, delivery recovery, retention, watchdog) instead")
    parser.add_argument("--prewarm", action="store_true",
                        help="run the runner host's agent (RUNNERGUARD_URL, RUNNERGUARD_HOST, RUNNERGUARD_HOST_TOKEN)")
    args = parser.parse_args(argv)
    if args.prewarm:
        return run_agent()
    try:
        settings = load_settings()
        deps = Deps.from_settings(settings)  # built once; every task gets what it declares of it
        # A notifier's missing secret stops the worker now, not at the first outage. The runner host's agent
        # (--prewarm, above) never gets here: it runs other people's code and never holds the notifiers' secrets.
        deps.notify()
    except ConfigError as exc:
        print(f"runnerguard worker: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)

    def trim() -> None:
        # Index trims only (deletes, which a full Redis still takes): run here, as no RQ job can start meanwhile.
        retention.trim(deps.redis, settings, now=time.time())

    if args.scheduler:
        return survive_outages(probe(settings), lambda: run_scheduler(
            settings, github_configured=bool(settings.github_app_id), level=settings.log_level),
            while_waiting=trim)
    names = args.queues or list(settings.queues)
    if args.burst:
        build_worker(deps.redis, names, deps).work(burst=True, logging_level=settings.log_level)
        return 0

    def work() -> bool:
        worker = build_worker(deps.redis, names, deps)
        worker.work(with_scheduler=True, logging_level=settings.log_level)
        return worker.stop_was_requested  # a stop we were asked for (SIGTERM, SIGINT), not an outage

    return survive_outages(probe(settings), work, while_waiting=trim)


def run_agent() -> int:
    """The host agent: it reads only its own settings (never REDIS_URL nor the webhook secret)."""
    try:
        settings = load_agent_settings()
        local = load_policy(settings.policy_path) if settings.policy_path is not None else None
    except ConfigError as exc:
        print(f"runnerguard agent: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        return agent.run(settings, local_policy=local, stop=stop)
    except OSError as exc:  # the listen address is taken: one line, and systemd restarts us
        print(f"runnerguard agent: cannot listen on {settings.listen_host}:{settings.listen_port}: {exc.strerror}",
              file=sys.stderr)
        return 1


def probe(settings: Settings) -> redis.Redis:
    """The client that tells an outage is over: short timeouts, the same Redis (or Sentinels) as the work."""
    return connection.connect(settings, socket_timeout=2)


def requeue_lost_every(settings: Settings) -> int:
    """Half the lost-task grace (a lost task runs again within 1.5 x the grace), at most REQUEUE_LOST_EVERY."""
    return max(5, min(REQUEUE_LOST_EVERY, settings.lost_task_grace_seconds // 2))


def run_scheduler(settings: Settings, *, github_configured: bool, level: str) -> bool:
    """RQ's cron scheduler: it only enqueues; the workers run the tasks. Several may run, on several hosts: each
    periodic task takes a per-slot lock before it enqueues (cron.TaskCronJob), so a slot runs once."""
    client = connection.connect(settings)
    periodic = [(tasks.SWEEP, SWEEP_EVERY), (tasks.TRIM, TRIM_EVERY), (tasks.WARM_DASHBOARD, DASHBOARD_EVERY),
                (tasks.CHECK_HOSTS, CHECK_HOSTS_EVERY), (tasks.REQUEUE_LOST, requeue_lost_every(settings))]
    if github_configured:
        periodic += [(tasks.RECOVER, RECOVER_EVERY), (tasks.WATCHDOG_TIMEOUTS, WATCHDOG_EVERY),
                     (tasks.WATCHDOG_STRANDED, STRANDED_EVERY), (tasks.WATCHDOG_RERUN, WATCHDOG_EVERY)]
    if settings.periodic_every_seconds:
        periodic = [(spec, settings.periodic_every_seconds) for spec, _ in periodic]  # tests, demos
    cron.scheduler(client, periodic, level=level).start()
    return True  # start() returns only when asked to stop


if __name__ == "__main__":
    sys.exit(main())
