"""Per-event costs for the README's capacity model: CPU ms per delivery in web and worker, Redis ops and bytes per job.

A job is three `workflow_job` deliveries (queued, in_progress, completed) of ~8 KB, as GitHub sends them. The web is
gunicorn with the deployed settings (2 workers here), fed by a closed loop from separate processes; CPU is read from
/proc/<pid>/stat (utime + stime of the gunicorn master and its workers) before and after. The worker is one
`worker.py --burst` over what the intake queued. Redis: `total_commands_processed` and `used_memory` (after
MEMORY PURGE) per job, right after the queue drained and again once RQ's results have expired (75 s).

Run: .venv/bin/python bench/bench_capacity.py [--jobs 1000] [--no-wait]
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import redis
from common import ROOT, SECRET, cpu_seconds, gunicorn_pids, print_table, start_gunicorn

from devtools.redis_server import start_redis
from devtools.reliability_load import lifecycles
from runnerguard.domain.signatures import sign


def post(port: int, guid: str, body: bytes) -> int:
    headers = {"X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": guid, "X-Hub-Signature-256": sign(SECRET, body),
               "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/webhooks/github", body=body, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def used_memory(client: redis.Redis) -> int:
    client.execute_command("MEMORY PURGE")
    return int(client.info("memory")["used_memory"])


def commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--no-wait", action="store_true", help="skip the 75 s wait for RQ's results to expire")
    args = parser.parse_args()
    server = start_redis()
    client = redis.Redis.from_url(server.url)
    env = {**os.environ, "GITHUB_WEBHOOK_SECRET": SECRET, "REDIS_URL": server.url, "RUNNERGUARD_LOG_LEVEL": "WARNING",
           "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}"}
    web = start_gunicorn("app:create_app()", env, workers=2, threads=4)
    try:
        plan = lifecycles(args.jobs * 3, tag=f"cap{time.time_ns()}", now=time.time())
        warm = lifecycles(60, tag=f"warm{time.time_ns()}", first_job=10**7)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda d: post(web.port, d.guid, d.body), warm))
        subprocess.run([sys.executable, "worker.py", "--burst", "events", "github"], cwd=ROOT, env=env, check=True)
        client.flushall()
        base_mem, base_cmds = used_memory(client), commands(client)
        pids = gunicorn_pids(web.process.pid)
        web_before = sum(cpu_seconds(p) for p in pids)
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda d: post(web.port, d.guid, d.body), plan))
        intake_s = time.perf_counter() - started
        web_cpu = sum(cpu_seconds(p) for p in pids) - web_before
        intake_cmds = commands(client) - base_cmds
        worker_started = time.perf_counter()
        before = os.times()
        subprocess.run([sys.executable, "worker.py", "--burst", "events", "github"], cwd=ROOT, env=env, check=True)
        after = os.times()
        worker_wall = time.perf_counter() - worker_started
        worker_cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        worker_cmds = commands(client) - base_cmds - intake_cmds
        mem_now = used_memory(client) - base_mem
        mem_later = None
        if not args.no_wait:
            time.sleep(75)  # RQ keeps a finished job's result for 60 s
            mem_later = used_memory(client) - base_mem
        n = len(plan)
        accepted = sum(1 for s in statuses if s == 202)
        rows = [
            ("web CPU per delivery", f"{web_cpu / n * 1000:.2f} ms", f"{n} deliveries, {accepted} x 202, "
             f"{n / intake_s:,.0f}/s closed loop, gunicorn 2x4 (master + workers)"),
            ("worker CPU per delivery", f"{worker_cpu / n * 1000:.2f} ms",
             f"one worker.py --burst (interpreter start included), {worker_wall:.1f} s wall"),
            ("Redis commands per job (intake)", f"{intake_cmds / args.jobs:.1f}", "3 deliveries: 3 EVALSHA + what"
             " the script runs counts as one each"),
            ("Redis commands per job (worker)", f"{worker_cmds / args.jobs:.1f}", "RQ's dequeue/bookkeeping and the"
             " timings task"),
            ("Redis bytes per job, queue drained", f"{mem_now / args.jobs:,.0f}", "RQ results still held (60 s)"),
        ]
        if mem_later is not None:
            rows.append(("Redis bytes per job, 75 s later", f"{mem_later / args.jobs:,.0f}",
                         "what retention keeps: deliveries, attempts, job record, indexes"))
        print_table(f"per-event costs, {args.jobs} jobs ({n} deliveries of ~8 KB), {os.cpu_count()} CPUs",
                    rows, ("measure", "value", "how"))
    finally:
        web.stop()
        server.stop()


if __name__ == "__main__":
    main()
