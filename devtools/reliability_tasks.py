"""Test-only RQ tasks and a clock-skewed worker for the reliability runs; never routed from a webhook."""

from __future__ import annotations

import argparse
import sys
import time

from redis import Redis
from rq import get_current_job

from config import load_settings
from handlers import timings
from runnerguard import logs
from runnerguard.queue import runner, tasks
from runnerguard.queue.deps import Deps
from runnerguard.queue.worker import build_worker, survive_outages
from runnerguard.store import connection

QUEUE = "reliability"
TEST_WORKER = ("-m", "devtools.reliability_tasks")  # worker.py's worker, plus the test-only tasks below
# This module's own keys: test-only bookkeeping, kept apart from runnerguard's key space (runnerguard/keys.py).
RUNS = "reliability:runs"  # hash guid -> times the task started
LINGERING = "reliability:lingering"  # hash guid -> when the first run began to linger (the moment to kill)
FINISHED = "reliability:finished"  # hash guid -> when a run finished
HOLDING = "reliability:holding"  # hash job id -> when `hold` began


def record_then_linger(guid: str, linger: float, *, deps: Deps) -> None:
    """The real timings task for `guid`, then, on the first run only, a long tail before returning.

    The timeline write (record, indexes, jobs_total, the delivery's "done") is already committed when the tail
    begins: a worker killed in the tail leaves a job RQ still sees as started, whose retry must not count the job
    a second time.
    """
    runs = int(deps.redis.hincrby(RUNS, guid, 1))  # type: ignore[arg-type]
    runner.run_delivery_task(tasks.TIMINGS, timings.record_job, guid, deps)
    if runs == 1:
        deps.redis.hset(LINGERING, guid, time.time())
        time.sleep(linger)
    job = get_current_job()
    deps.redis.hset(FINISHED, guid, f"{time.time()}:{runs}:{job.id if job else ''}")


def hold(seconds: float, *, redis: Redis) -> None:
    """Keep the worker busy for `seconds`, so that an outage begun meanwhile meets RQ's own bookkeeping at the
    end of the job (the case a worker idle in its dequeue wait never shows)."""
    job = get_current_job()
    redis.hset(HOLDING, job.id if job else "?", time.time())
    time.sleep(seconds)


# Test-only tasks, run only by this module's worker (worker.py's workers refuse them: not in the task table).
TEST_TASKS = {spec.path: spec for spec in (
    tasks.TaskSpec("record_then_linger", "devtools.reliability_tasks.record_then_linger", QUEUE, timeout=600),
    tasks.TaskSpec("hold", "devtools.reliability_tasks.hold", QUEUE, timeout=600),
)}


def main(argv: list[str] | None = None) -> int:
    """`python -m devtools.reliability_tasks --clock-skew S QUEUE...`: worker.py's worker, its tasks' clock off by
    S seconds (a host whose NTP drifted). Only the tasks' clock moves: RQ's own bookkeeping keeps the real time."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("queues", nargs="+")
    parser.add_argument("--clock-skew", type=float, default=0.0)
    args = parser.parse_args(argv)

    settings = load_settings()
    logs.configure(settings.log_level)
    deps = Deps.from_settings(settings)
    deps.clock = lambda: time.time() + args.clock_skew

    def work() -> bool:
        worker = build_worker(deps.redis, args.queues, deps, extra_tasks=TEST_TASKS)
        worker.work(with_scheduler=True, logging_level=settings.log_level)
        return worker.stop_was_requested

    return survive_outages(connection.connect(settings, socket_timeout=2), work)


if __name__ == "__main__":
    sys.exit(main())
