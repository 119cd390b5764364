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
from common import ROOT, SECRET, Gunicorn, percentile, print_table

from devtools.redis_server import free_port, start_redis
from runnerguard.store import host_tokens, work

WAIT = 30


def start_deployed_gunicorn(env: dict[str, str], log: Path) -> Gunicorn:
    """gunicorn exactly as deployed: `-c deploy/gunicorn.conf.py` (its workers, gthread, threads, access log)."""
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", str(ROOT / "deploy/gunicorn.conf.py"),
         "--bind", f"127.0.0.1:{port}", "app:create_app()"],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return Gunicorn(process, port)
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("gunicorn did not start")


def _agent(port: int, name: str, token: str, *, stop: threading.Event, stats: dict[str, int],
           lock: threading.Lock) -> None:
    """One agent: long polls back to back, as the real one does, over a kept-alive connection."""
    headers = {"Authorization": f"Bearer {token}", "X-Runnerguard-Host": name}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT + 15)
    while not stop.is_set():
        started = time.monotonic()
        with lock:
            stats["started"] += 1
        try:
            conn.request("GET", f"/agent/v1/work?wait={WAIT}", headers=headers)
            answer = conn.getresponse()
            answer.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT + 15)
            with lock:
                stats["errors"] += 1
            time.sleep(0.5)
            continue
        took = time.monotonic() - started
        with lock:
            stats["polls"] += 1
            if answer.status == 204 and answer.getheader("Retry-After"):
                stats["cut"] += 1
        if answer.getheader("Retry-After"):
            stop.wait(float(answer.getheader("Retry-After") or 5))  # what the agent is asked to do
        elif took < 1 and answer.status != 200:
            stop.wait(1)


def agents_process(port: int, hosts: list[tuple[str, str]], ready: mp.Event, done: mp.Event,  # type: ignore[valid-type]
                   out: mp.Queue) -> None:  # type: ignore[type-arg]
    """All agents in one process of their own (they must not share the load generator's interpreter)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    stats = {"started": 0, "polls": 0, "cut": 0, "errors": 0}
    lock = threading.Lock()
    threads = [threading.Thread(target=_agent, args=(port, n, t), daemon=True,
                                kwargs={"stop": stop, "stats": stats, "lock": lock}) for n, t in hosts]
    for thread in threads:
        thread.start()
    ready.set()  # type: ignore[attr-defined]
    done.wait()  # type: ignore[attr-defined]
    stop.set()
    for thread in threads:  # the main process hands every host an item: the polls held answer at once
        thread.join(timeout=WAIT + 10)
    out.put(dict(stats))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0, help="length of one paced round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per condition")
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
    try:
        web = start_deployed_gunicorn(env, logs / "web.log")
        paced(web.port, 100, 1.0, "warm")  # imports, script loads and connections of every worker
        quiet: list[float] = []
        polled: list[float] = []
        quiet_rounds: list[float] = []
        polled_rounds: list[float] = []
        stats = {"started": 0, "polls": 0, "cut": 0, "errors": 0}

        def quiet_round(round_no: int) -> None:
            lat = [x[1] for x in paced(web.port, 100, args.seconds, f"quiet{round_no}")]
            quiet.extend(lat)
            quiet_rounds.append(percentile(lat, 99))

        def polled_round(round_no: int) -> None:
            ready, done, out = mp.Event(), mp.Event(), mp.Queue()
            agents = mp.Process(target=agents_process, args=(web.port, hosts, ready, done, out))
            agents.start()
            ready.wait(10)
            time.sleep(2.0)  # every agent's first poll is in and waiting
            lat = [x[1] for x in paced(web.port, 100, args.seconds, f"polled{round_no}")]
            polled.extend(lat)
            polled_rounds.append(percentile(lat, 99))
            done.set()
            # Work for every host answers the polls the server holds, so that the next quiet round is quiet.
            for name, _ in hosts:
                work.create(client, name, job_id=round_no, kind="cache", name="bench", now=time.time())
            for key, value in out.get(timeout=WAIT + 30).items():
                stats[key] += value
            agents.join(timeout=WAIT + 30)
            if agents.is_alive():
                agents.kill()
            time.sleep(1.0)

        for round_no in range(args.rounds):
            # alternate which goes first, so that a drift of the machine's load tilts neither
            order = (quiet_round, polled_round) if round_no % 2 == 0 else (polled_round, quiet_round)
            for run in order:
                run(round_no)
        # The median round's p99, as bench_ingest reports medians: one noisy round (2 shared cores) moves a pooled
        # p99 of a few thousand samples by itself; the pooled figures are in the notes.
        p99_quiet, p99_polled = statistics.median(quiet_rounds) * 1000, statistics.median(polled_rounds) * 1000
        threads = args.threads or "conf"
        rows = [
            ("ack p99 at 100/s, no agents", f"{p99_quiet:.1f} ms", f"p50 {percentile(quiet, 50) * 1000:.1f} ms",
             "", "", f"{len(quiet)} deliveries; pooled p99 {percentile(quiet, 99) * 1000:.1f} ms; rounds "
             + ", ".join(f"{x * 1000:.1f}" for x in quiet_rounds)),
            (f"ack p99 at 100/s, {args.agents} agents long-polling", f"{p99_polled:.1f} ms",
             f"p50 {percentile(polled, 50) * 1000:.1f} ms", f"{p99_polled / p99_quiet:.0%}", "<= 120%",
             f"{len(polled)} deliveries; pooled p99 {percentile(polled, 99) * 1000:.1f} ms; rounds "
             + ", ".join(f"{x * 1000:.1f}" for x in polled_rounds)
             + f"; polls started {stats['started']}, answered {stats['polls']} (cut to 0: {stats['cut']}), "
             f"errors {stats['errors']}"),
        ]
        print_table(f"Agent long polls vs webhook intake (gunicorn -c deploy/gunicorn.conf.py, threads {threads})",
                    rows, ("measure", "value", "p50", "vs none", "target", "notes"))
    finally:
        if web is not None:
            web.stop()
        server.stop()


if __name__ == "__main__":
    main()
