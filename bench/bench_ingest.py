"""Ingest, ack latency, worker throughput and freshness, each against its baseline in the same run.

Run: make bench  (or .venv/bin/python bench/bench_ingest.py [--seconds 5])
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from common import (
    ROOT,
    SECRET,
    Gunicorn,
    headers_for,
    job_body,
    percentile,
    print_table,
    start_gunicorn,
    throughput,
)
from rq import Queue

from config import load_settings
from devtools.redis_server import start_redis
from runnerguard.store import deliveries, delivery_index
from runnerguard.web.intake import Intake


def paced(port: int, rate: float, seconds: float, tag: str) -> list[tuple[str, float, float]]:
    """Open-loop sender: one delivery every 1/rate s; latency counts from the scheduled send time."""
    results = []
    start = time.perf_counter()
    total = int(rate * seconds)
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        body = job_body(job_id=10_000_000 + i)
        guid = f"{tag}-{i}"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/webhooks/github", body=body, headers=headers_for(body, guid))
        status = conn.getresponse().status
        conn.close()
        acked = time.perf_counter()
        if status != 202:
            raise RuntimeError(f"delivery {guid} answered {status}")
        results.append((guid, acked - scheduled, time.time()))
    return results


def worker_rate(kind: str, queue: str, env: dict[str, str]) -> tuple[int, float]:
    out = subprocess.run([sys.executable, str(ROOT / "bench/run_worker.py"), kind, queue], env=env,
                         capture_output=True, text=True, check=True, cwd=ROOT)
    jobs, seconds = out.stdout.split()[-2:]
    return int(jobs), float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0, help="length of one load run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating ingest rounds per server")
    parser.add_argument("--workers", type=int, default=min(2 * (os.cpu_count() or 1) + 1, 8),
                        help="gunicorn workers, the same for both apps (default: deploy/gunicorn.conf.py's)")
    parser.add_argument("--threads", type=int, default=4,
                        help="gunicorn threads per worker (gthread when > 1), as deploy/gunicorn.conf.py")
    parser.add_argument("--clients", type=int, default=3, help="load generator processes")
    parser.add_argument("--jobs", type=int, default=1500, help="tasks per worker benchmark")
    args = parser.parse_args()
    server = start_redis()
    # The service's own log level (INFO: a JSON line per delivery and per task), written to a file as a journal
    # would take it; the bare app logs nothing, which is part of what it is the baseline for.
    logs = Path(tempfile.mkdtemp(prefix="runnerguard-bench-"))
    env = {**os.environ, "GITHUB_WEBHOOK_SECRET": SECRET, "REDIS_URL": server.url,
           "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}"}
    client = redis.Redis.from_url(server.url)
    rows: list[tuple[str, ...]] = []
    servers: list[Gunicorn] = []  # stopped in `finally`, so a failed run leaves no gunicorn behind
    worker: subprocess.Popen[bytes] | None = None
    try:
        # 1. ingest throughput, bare Flask vs runnerguard, same gunicorn settings. Both servers run side by side (the
        # idle one costs nothing) and take turns, round after round: a machine that slows down for a while (2 noisy
        # cores) slows both alike instead of tilting the ratio; the median round of each is reported.
        bare = start_gunicorn("bare_app:create_app()", env, args.workers, args.threads, log=logs / "bare.log")
        servers.append(bare)
        web = start_gunicorn("app:create_app()", env, args.workers, args.threads, log=logs / "web.log")
        servers.append(web)
        bare_runs: list[float] = []
        rg_runs: list[float] = []
        errors = {"bare": 0, "rg": 0}
        for round_no in range(args.rounds):
            for name, gunicorn, runs in (("bare", bare, bare_runs), ("rg", web, rg_runs)):
                rps, failed = throughput(gunicorn.port, args.seconds, args.clients, f"{name}{round_no}")
                runs.append(rps)
                errors[name] += failed
        bare.stop()
        bare_rps, rg_rps = statistics.median(bare_runs), statistics.median(rg_runs)
        recorded = delivery_index.count(client)
        queued = Queue("events", connection=client).count
        per_round = ", ".join(f"{r / b:.0%}" for r, b in zip(rg_runs, bare_runs, strict=True))
        rows.append(("ingest: signed 8 KB workflow_job POSTs", f"{rg_rps:,.0f} req/s", "bare Flask 204",
                     f"{bare_rps:,.0f} req/s", f"{rg_rps / bare_rps:.0%}", ">= 50%",
                     f"median of {args.rounds} rounds (each round: {per_round}); errors {errors['rg']}/"
                     f"{errors['bare']}; recorded {recorded}, queued {queued}"))
        client.flushall()

        # 2. ack latency at a steady 100/s
        lat = paced(web.port, 100, args.seconds * 2, "lat")
        p50, p99 = percentile([x[1] for x in lat], 50) * 1000, percentile([x[1] for x in lat], 99) * 1000
        rows.append(("ack latency at 100 req/s", f"p99 {p99:.1f} ms", "", f"p50 {p50:.1f} ms", "", "p99 < 25 ms",
                     f"{len(lat)} deliveries"))
        client.flushall()

        # 3. worker: timeline events per second vs RQ's forking worker running a no-op
        settings = load_settings(env)
        intake = Intake(settings=settings, policy=__import__("config").Policy(), client=client)
        for i in range(args.jobs):
            body = job_body(job_id=20_000_000 + i)
            intake.accept(headers_for(body, f"w-{i}"), body)
        noop_queue = Queue("noop", connection=client)
        for i in range(args.jobs):
            noop_queue.enqueue("noop_task.noop", f"n-{i}")
        ours_jobs, ours_s = worker_rate("runnerguard", "events", env)
        fork_jobs, fork_s = worker_rate("fork", "noop", env)
        ours, fork = ours_jobs / ours_s, fork_jobs / fork_s
        rows.append(("worker: timeline events recorded", f"{ours:,.0f} jobs/s", "RQ forking Worker, no-op",
                     f"{fork:,.0f} jobs/s", f"{ours / fork:.1f}x", ">= 4x", f"{ours_jobs} vs {fork_jobs} tasks"))
        client.flushall()

        # 4. freshness: 202 -> timeline holds the event, at 100 deliveries/s with one worker process running
        worker = subprocess.Popen([sys.executable, "worker.py", "events"], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        sent = paced(web.port, 100, args.seconds * 2, "fresh")
        deadline = time.time() + 30
        while Queue("events", connection=client).count and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        fresh = []
        for guid, _latency, acked_wall in sent:
            done = [a["at"] for a in deliveries.attempts(client, guid) if a["state"] == "done"]
            if done:
                fresh.append(done[0] - acked_wall)
        rows.append(("freshness: 202 -> timeline holds it", f"p99 {percentile(fresh, 99) * 1000:.1f} ms", "",
                     f"p50 {percentile(fresh, 50) * 1000:.1f} ms", "", "p99 < 100 ms",
                     f"{len(fresh)}/{len(sent)} processed"))
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
        for gunicorn in servers:
            gunicorn.stop()
        server.stop()
        shutil.rmtree(logs, ignore_errors=True)
    print_table(f"runnerguard ingest benchmark ({os.cpu_count()} cores, gunicorn --workers {args.workers} "
                f"--threads {args.threads}, "
                f"{args.clients} client processes, {args.seconds:.0f} s per run)",
                rows, ("measure", "runnerguard", "baseline", "baseline figure", "ratio", "target", "notes"))
    print(json.dumps({"ingest_ratio": round(rg_rps / bare_rps, 3), "ack_p99_ms": round(p99, 2),
                      "worker_ratio": round(ours / fork, 2),
                      "freshness_p99_ms": round(percentile(fresh, 99) * 1000, 2)}))


if __name__ == "__main__":
    main()
