"""Webhook ack latency while runner-host agents long-poll: 100 deliveries/s with 20 agents polling against none.

Both in the same run, under the deployed gunicorn settings (deploy/gunicorn.conf.py), in alternating rounds so
that a machine slowing down for a while slows both alike. Target: p99 with agents within 20% of p99 without.

Run: .venv/bin/python bench/bench_agent_poll.py [--seconds 6] [--rounds 3] [--agents 20] [--threads N]
(`--threads 4` shows the settings before the agent API: every thread of a process can end up in a poll.)
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
from bench_ingest import paced
from common import ROOT, SECRET, Gunicorn, percentile, print_table, wait_healthy

from devtools.redis_server import free_port, start_redis
from runnerguard.store import host_tokens, work

WAIT = 30
SETTLE = 3.0


def start_deployed_gunicorn(env: dict[str, str], log: Path) -> Gunicorn:
    """gunicorn exactly as deployed: `-c deploy/gunicorn.conf.py` (its workers, gthread, threads, access log)."""
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", str(ROOT / "deploy/gunicorn.conf.py"),
         "--bind", f"127.0.0.1:{port}", "app:create_app()"],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )
    return wait_healthy(process, port, name="runnerguard", timeout=30, every=0.2)


def _agent(port: int, name: str, token: str, *, active: mp.Event, quit_: mp.Event,  # type: ignore[valid-type]
           stats: dict[str, int], lock: threading.Lock) -> None:
    """One agent: long polls back to back while `active` is set, as the real one does, on a kept-alive connection."""
    headers = {"Authorization": f"Bearer {token}", "X-Runnerguard-Host": name}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT + 15)
    while not quit_.is_set():  # type: ignore[attr-defined]
        if not active.wait(0.2):  # type: ignore[attr-defined]
            continue
        with lock:
            stats["started"] += 1
        started = time.monotonic()
        try:
            conn.request("GET", f"/agent/v1/work?wait={WAIT}", headers=headers)
            answer = conn.getresponse()
            answer.read()
        except (OSError, http.client.HTTPException):
            conn.close()  # gunicorn closes a kept-alive connection idle for 5 s: open another
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT + 15)
            with lock:
                stats["errors"] += 1
            continue
        with lock:
            stats["answered"] += 1
            stats["cut"] += 1 if answer.getheader("Retry-After") else 0
        if answer.getheader("Retry-After"):
            quit_.wait(float(answer.getheader("Retry-After") or 5))  # type: ignore[attr-defined]
        elif answer.status != 200 and time.monotonic() - started < 1:
            quit_.wait(1)  # type: ignore[attr-defined]


def agents_process(port: int, hosts: list[tuple[str, str]], active: mp.Event, quit_: mp.Event,  # type: ignore[valid-type]
                   out: mp.Queue) -> None:  # type: ignore[type-arg]
    """All agents, in one process of their own for the whole run (they must not share the sender's interpreter,
    and starting them must not be part of what is measured)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stats = {"started": 0, "answered": 0, "cut": 0, "errors": 0}
    lock = threading.Lock()
    threads = [threading.Thread(target=_agent, args=(port, n, t), daemon=True,
                                kwargs={"active": active, "quit_": quit_, "stats": stats, "lock": lock})
               for n, t in hosts]
    for thread in threads:
        thread.start()
    quit_.wait()  # type: ignore[attr-defined]
    for thread in threads:
        thread.join(timeout=WAIT + 10)
    out.put(dict(stats))


def release_polls(client: redis.Redis, hosts: list[tuple[str, str]], job_id: int) -> None:
    """Work for every host: each poll the server holds answers at once, so the next quiet segment is quiet."""
    for name, _ in hosts:
        work.create(client, name, job_id=job_id, kind="cache", name="bench", now=time.time())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one paced segment")
    parser.add_argument("--rounds", type=int, default=16, help="alternating segments per condition")
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None,
                        help="GUNICORN_THREADS (default: deploy/gunicorn.conf.py's own)")
    args = parser.parse_args()
    server = start_redis()
    logs = Path(tempfile.mkdtemp(prefix="runnerguard-bench-poll-"))
    env = {**os.environ, "GITHUB_WEBHOOK_SECRET": SECRET, "REDIS_URL": server.url,
           "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}"}
    if args.threads is not None:
        env["GUNICORN_THREADS"] = str(args.threads)
    client = redis.Redis.from_url(server.url)
    hosts = []
    for n in range(args.agents):
        token = host_tokens.add(client, f"bench-host-{n}", now=time.time())
        assert token is not None
        hosts.append((f"bench-host-{n}", token))
    web: Gunicorn | None = None
    agents: mp.Process | None = None
    quit_ = mp.Event()
    try:
        web = start_deployed_gunicorn(env, logs / "web.log")
        paced(web.port, 100, 1.0, "warm")  # imports, script loads and connections of every worker
        active, out = mp.Event(), mp.Queue()
        agents = mp.Process(target=agents_process, args=(web.port, hosts, active, quit_, out))
        agents.start()
        time.sleep(1.0)
        samples: dict[str, list[float]] = {"quiet": [], "polled": []}
        per_segment: dict[str, list[float]] = {"quiet": [], "polled": []}
        for segment in range(args.rounds):
            # Short segments, alternating (and which goes first alternating too): the load of a shared machine
            # drifts over seconds, and must tilt neither condition.
            order = ("quiet", "polled") if segment % 2 == 0 else ("polled", "quiet")
            for condition in order:
                if condition == "polled":
                    active.set()
                # the same pause before either: the agents' first polls (and reconnects: gunicorn closes a
                # connection idle for 5 s) are in and held before anything is measured
                time.sleep(SETTLE)
                lat = [x[1] for x in paced(web.port, 100, args.seconds, f"{condition}{segment}")]
                samples[condition] += lat
                per_segment[condition].append(percentile(lat, 99))
                if condition == "polled":
                    active.clear()
                    release_polls(client, hosts, segment)
        quit_.set()
        release_polls(client, hosts, 10_000)
        stats = out.get(timeout=WAIT + 30)
        quiet, polled = samples["quiet"], samples["polled"]
        p99_quiet, p99_polled = percentile(quiet, 99) * 1000, percentile(polled, 99) * 1000
        med_quiet = statistics.median(per_segment["quiet"]) * 1000
        med_polled = statistics.median(per_segment["polled"]) * 1000
        threads = args.threads or "conf"
        rows = [
            ("ack p99 at 100/s, no agents", f"{p99_quiet:.1f} ms", f"p50 {percentile(quiet, 50) * 1000:.1f} ms",
             "", "", f"{len(quiet)} deliveries in {args.rounds} segments; median segment p99 {med_quiet:.1f} ms"),
            (f"ack p99 at 100/s, {args.agents} agents long-polling", f"{p99_polled:.1f} ms",
             f"p50 {percentile(polled, 50) * 1000:.1f} ms", f"{p99_polled / p99_quiet:.0%}", "<= 120%",
             f"{len(polled)} deliveries; median segment p99 {med_polled:.1f} ms ({med_polled / med_quiet:.0%}); "
             f"polls {stats['started']} (cut to 0: {stats['cut']}), reconnects {stats['errors']}"),
        ]
        print_table(f"Agent long polls vs webhook intake (gunicorn -c deploy/gunicorn.conf.py, threads {threads})",
                    rows, ("measure", "value", "p50", "vs none", "target", "notes"))
    finally:
        quit_.set()
        if agents is not None:
            agents.join(timeout=WAIT + 15)
            if agents.is_alive():
                agents.kill()
        if web is not None:
            web.stop()
        server.stop()


if __name__ == "__main__":
    main()
