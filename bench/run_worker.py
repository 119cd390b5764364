"""Drain a queue with one worker in this process and print the seconds it took (used by bench_ingest.py)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import redis  # noqa: E402
from rq import Queue, Worker  # noqa: E402

from config import load_settings  # noqa: E402
from runnerguard.queue.deps import Deps  # noqa: E402
from runnerguard.queue.worker import build_worker  # noqa: E402


def main() -> None:
    kind, queue = sys.argv[1], sys.argv[2]
    settings = load_settings()
    if kind == "runnerguard":
        deps = Deps.from_settings(settings)
        worker = build_worker(deps.redis, [queue], deps)
    else:  # RQ's default worker: forks a work horse per job
        connection = redis.Redis.from_url(settings.redis_url)
        worker = Worker([Queue(queue, connection=connection)], connection=connection)
    rq_queue = Queue(queue, connection=worker.connection)
    jobs = rq_queue.count
    finished_at: list[float] = []

    def watch() -> None:
        # Time the draining itself, not the worker's start-up and teardown (both fixed costs, paid once).
        probe = redis.Redis.from_url(settings.redis_url)
        watched = Queue(queue, connection=probe)
        while watched.count or watched.started_job_registry.count:
            time.sleep(0.005)
        finished_at.append(time.perf_counter())

    started = time.perf_counter()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    worker.work(burst=True, logging_level="ERROR")
    watcher.join(timeout=30)
    print(f"{jobs} {(finished_at[0] if finished_at else time.perf_counter()) - started:.4f}")


if __name__ == "__main__":
    main()
