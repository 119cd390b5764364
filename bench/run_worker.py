"""Drain a queue with one worker in this process and print the seconds it took (used by bench_ingest.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import redis  # noqa: E402
from rq import Queue, Worker  # noqa: E402

from config import load_settings  # noqa: E402
from handlers import runtime  # noqa: E402
from worker import build_worker  # noqa: E402


def main() -> None:
    kind, queue = sys.argv[1], sys.argv[2]
    settings = load_settings()
    if kind == "runnerguard":
        runtime.install(runtime.Runtime.from_settings(settings))
        worker = build_worker(settings.redis_url, [queue])
    else:  # RQ's default worker: forks a work horse per job
        connection = redis.Redis.from_url(settings.redis_url)
        worker = Worker([Queue(queue, connection=connection)], connection=connection)
    jobs = Queue(queue, connection=worker.connection).count
    started = time.perf_counter()
    worker.work(burst=True, logging_level="ERROR")
    print(f"{jobs} {time.perf_counter() - started:.4f}")


if __name__ == "__main__":
    main()
