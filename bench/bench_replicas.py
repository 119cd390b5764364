"""What RUNNERGUARD_REDIS_MIN_REPLICAS=1 costs the intake: ack latency with and without, one replica on loopback.

Both webs run side by side against the same primary (the one with a replica attached) and take turns, round after
round, at a steady rate; the median round of each is reported. Run: .venv/bin/python bench/bench_replicas.py
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import redis
from common import ROOT, SECRET, Gunicorn, headers_for, job_body, percentile, print_table, start_gunicorn

from devtools.redis_server import start_redis


def paced(port: int, rate: float, seconds: float, tag: str) -> tuple[list[float], dict[int, int]]:
    """Open loop: one delivery every 1/rate s; latency from the scheduled send time to the answer (ms)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        body = job_body(job_id=30_000_000 + i)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/webhooks/github", body=body, headers=headers_for(body, f"{tag}-{i}"))
        status = conn.getresponse().status
        conn.close()
        latencies.append((time.perf_counter() - scheduled) * 1000)
        statuses[status] = statuses.get(status, 0) + 1
    return latencies, statuses


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0, help="deliveries per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    primary = start_redis()
    replica = start_redis(extra_args=["--replicaof", "127.0.0.1", str(primary.port)])
    servers: list[Gunicorn] = []
    logs = Path(tempfile.mkdtemp(prefix="runnerguard-bench-replicas-"))
    try:
        client = redis.Redis.from_url(primary.url)
        deadline = time.monotonic() + 20
        while client.info("replication").get("connected_slaves", 0) < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not connect")
            time.sleep(0.1)
        env = {**os.environ, "GITHUB_WEBHOOK_SECRET": SECRET, "REDIS_URL": primary.url,
               "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}", "RUNNERGUARD_LOG_LEVEL": "WARNING"}
        plain = start_gunicorn("app:create_app()", env, args.workers, args.threads, log=logs / "plain.log")
        servers.append(plain)
        waiting = start_gunicorn("app:create_app()", {**env, "RUNNERGUARD_REDIS_MIN_REPLICAS": "1"}, args.workers,
                                 args.threads, log=logs / "wait.log")
        servers.append(waiting)
        runs: dict[str, list[tuple[float, float]]] = {"none": [], "one": []}
        statuses: dict[str, dict[int, int]] = {"none": {}, "one": {}}
        for round_no in range(args.rounds):
            for name, server in (("none", plain), ("one", waiting)):
                lat, answered = paced(server.port, args.rate, args.seconds, f"{name}{round_no}-{time.time_ns()}")
                runs[name].append((percentile(lat, 50), percentile(lat, 99)))
                for status, n in answered.items():
                    statuses[name][status] = statuses[name].get(status, 0) + n
        rows = []
        for name, label in (("none", "RUNNERGUARD_REDIS_MIN_REPLICAS unset"), ("one", "=1 (WAIT 1 1000)")):
            p50 = statistics.median(r[0] for r in runs[name])
            p99 = statistics.median(r[1] for r in runs[name])
            rows.append((label, f"{p50:.2f} ms", f"{p99:.2f} ms", str(statuses[name])))
        base50, base99 = (statistics.median(r[i] for r in runs["none"]) for i in (0, 1))
        one50, one99 = (statistics.median(r[i] for r in runs["one"]) for i in (0, 1))
        rows.append(("cost of the wait", f"+{one50 - base50:.2f} ms", f"+{one99 - base99:.2f} ms", ""))
        print_table(f"ack latency at {args.rate:.0f} deliveries/s, one replica on loopback, {args.workers}x"
                    f"{args.threads} gunicorn, median of {args.rounds} rounds of {args.seconds:.0f} s",
                    rows, ("intake", "p50", "p99", "answers"))
    finally:
        for server in servers:
            server.stop()
        replica.stop()
        primary.stop()
        shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    main()
