"""Rollback: trigger evaluation cost at 10 k vs 1 M recorded jobs, and time from the triggering 202 to the PR.

Run: .venv/bin/python bench/bench_rollback.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
import requests
from common import ROOT, SECRET, percentile, print_table
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import make_server

from app import create_app
from config import load_settings
from devtools.github_simulator import SimulatorServer
from devtools.redis_server import free_port, start_redis
from runnerguard.domain.pools import DEFAULT_POOL
from runnerguard.domain.signatures import sign
from runnerguard.queue.deps import Deps
from runnerguard.services.rollback import RollbackService
from runnerguard.store import jobstore, keys, time_buckets

APP_ID = 4242
REPO = "octo/laptop-ci"
WORKFLOW = "name: CI\non: push\njobs:\n  build:\n    runs-on: [self-hosted, Linux, X64]\n    steps: [{run: make}]\n"


def fill(client: redis.Redis, jobs: int, now: float) -> None:
    """`jobs` finished jobs of the pool spread over 30 days, a third failed, in the 10-minute buckets the timeline
    writes (store/time_buckets.py), each expiring with a 31-day retention."""
    client.flushall()
    buckets: dict[int, dict[str, float]] = {}
    for i in range(jobs):
        score = now - (i * 2_592_000 / jobs)
        buckets.setdefault(time_buckets.start_of(score), {})[f"1:{i}"] = score
    pipe = client.pipeline(transaction=False)
    for start, finished in buckets.items():
        for name, members in ((keys.pool_finished_at("self-hosted", start), finished),
                              (keys.pool_failed_at("self-hosted", start),
                               {m: s for m, s in finished.items() if int(m[2:]) % 3 == 0})):
            if members:
                pipe.zadd(name, members)
                pipe.expireat(name, start + time_buckets.WIDTH + 31 * 86400)
        if len(pipe.command_stack) > 200:
            pipe.execute()
    pipe.execute()


def evaluation_cost(client: redis.Redis, url: str, jobs: int, rounds: int) -> tuple[float, float]:
    """Median microseconds of one failure-rate evaluation (one script call over a day of buckets, O(1) a bucket)
    and of a naive full read."""
    now = time.time()
    fill(client, jobs, now)
    settings = load_settings({"GITHUB_WEBHOOK_SECRET": SECRET, "REDIS_URL": url})
    deps = Deps.from_settings(settings, client=client)
    service = RollbackService(redis=client, policy=deps.policy, github=None)
    ours = []
    for _ in range(rounds):
        t = time.perf_counter()
        service.failure_rate_decision(DEFAULT_POOL)
        ours.append(time.perf_counter() - t)
    naive = []
    for _ in range(3):
        t = time.perf_counter()
        scores = jobstore.index_state(client, "self-hosted")["finished"]
        sum(1 for _, s in scores if s >= now - 86400)
        naive.append(time.perf_counter() - t)
    return percentile(ours, 50) * 1e6, percentile(naive, 50) * 1e6


def time_to_pr(url: str) -> dict[str, float]:
    """Signed deliveries into a live runnerguard + worker; the 11th completion crosses 50%; wait for the PR."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    workdir = Path(tempfile.mkdtemp(prefix="rg-bench-"))
    (workdir / "app.pem").write_bytes(pem)
    sim = SimulatorServer(app_id=APP_ID, app_public_key_pem=public)
    sim.add_repo(REPO, {".github/workflows/ci.yml": WORKFLOW})
    sim.install([REPO])
    env = {**os.environ, "GITHUB_WEBHOOK_SECRET": SECRET, "REDIS_URL": url, "GITHUB_APP_ID": str(APP_ID),
           "GITHUB_PRIVATE_KEY_PATH": str(workdir / "app.pem"), "GITHUB_API_URL": sim.url,
           "RUNNERGUARD_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    settings = load_settings(env)
    redis.Redis.from_url(url).flushall()
    port = free_port()
    server = make_server("127.0.0.1", port, create_app(settings), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    worker = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(1.5)

    sys.path.insert(0, str(ROOT))
    from tests.test_timings import job_events  # noqa: PLC0415 - the suite's own payload builder, only for this run

    now = time.time()
    acked = 0.0
    for n in range(11):
        conclusion = "failure" if n >= 5 else "success"
        for i, event in enumerate(job_events(700 + n, conclusion, created=now - 3600 + n, repo=REPO, repo_id=5,
                                             labels=["self-hosted", "Linux", "X64"])):
            body = json.dumps(event).encode()
            headers = {"X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": f"b-{n}-{i}",
                       "X-Hub-Signature-256": sign(SECRET, body), "Content-Type": "application/json"}
            answer = requests.post(f"http://127.0.0.1:{port}/webhooks/github", data=body, headers=headers, timeout=10)
            assert answer.status_code == 202, answer.text
            acked = time.perf_counter()
    deadline = time.time() + 120
    while not sim.pulls(REPO) and time.time() < deadline:
        time.sleep(0.02)
    seconds = time.perf_counter() - acked
    worker.terminate()
    worker.wait(timeout=10)
    server.shutdown()
    sim.stop()
    return {"seconds": seconds, "prs": len(sim.pulls(REPO))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args()
    server = start_redis()
    client = redis.Redis.from_url(server.url)
    try:
        small_ours, small_naive = evaluation_cost(client, server.url, 10_000, args.rounds)
        large_ours, large_naive = evaluation_cost(client, server.url, args.large, args.rounds)
        pr = time_to_pr(server.url)
    finally:
        server.stop()
    print_table(
        f"runnerguard rollback benchmark ({os.cpu_count()} cores)",
        [
            ("trigger evaluation, 10 k jobs (1 script call)", f"{small_ours:.0f} us", "naive full read",
             f"{small_naive:,.0f} us", ""),
            (f"trigger evaluation, {args.large // 1000:,} k jobs", f"{large_ours:.0f} us", "naive full read",
             f"{large_naive:,.0f} us", f"ratio large/small {large_ours / small_ours:.2f} (target near 1)"),
            ("triggering 202 -> PR exists", f"{pr['seconds']:.1f} s", "", "",
             f"{pr['prs']} PR; writes paced >= 1 s apart per installation (GitHub's REST best practice)"),
        ],
        ("measure", "runnerguard", "baseline", "baseline figure", "notes"),
    )


if __name__ == "__main__":
    main()
