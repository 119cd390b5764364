"""Intake throughput with wrk (a C load generator) against a bare Flask view, the least durable intake and one durable
write, with each server's CPU per request and Redis's (read from /proc during the same runs), and the ack p99 at a
steady 1,000/s.

Run: make bench  (or .venv/bin/python bench/bench_wrk.py [--seconds 5] [--rounds 3] [--appendfsync everysec])

All four servers run under deploy/gunicorn.conf.py as deployed (workers, gthread threads, the JSON access log,
here to a file as a journal would take it); Redis is AOF with `appendfsync always`, runnerguard's durability
promise (`--appendfsync everysec` shows what the promise costs). The second baseline, bench/min_intake_app.py,
verifies, parses and writes each delivery with one script and does nothing else: the ceiling of any intake that
keeps the promise on this stack; the third, bench/one_write_app.py, is the bare view plus one 1-byte SET: what one
acknowledged write costs by itself. wrk sends ~8 KB signed workflow_job bodies (POOL precomputed bodies and
signatures: wrk's Lua has no HMAC), each thread its own lane of them, with a unique X-GitHub-Delivery per request,
2 threads x 16 connections; Redis is flushed before each run, so every request is a new delivery (a body seen
before is a 200 duplicate, which writes nothing). The servers take turns, round after round, and the median round
of each is reported. The paced run: bench/paced_client.py, an open-loop client sending one prebuilt request every
1/rate s on keep-alive connections, latency from the scheduled time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from common import ROOT, SECRET, cpu_seconds, generated_bodies, gunicorn_pids, percentile, print_table
from paced_client import build_requests, paced

from devtools.redis_server import free_port, start_redis
from runnerguard.domain.signatures import sign

# Enough signed bodies that a round sends each at most once: the intake refuses a body it has seen under any other
# delivery id (200 duplicate, no write), so a small pool would measure the duplicate path after its first lap.
POOL = 12_000
WRK_THREADS, WRK_CONNECTIONS = 2, 16
NODE_REFERENCE = "16-18 k req/s (issue #18: octokit's check + one MULTI of SET NX and LPUSH, 2 processes)"


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: apt-get install -y wrk")
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
    return shutil.which("wrk") or "wrk"


def signed_bodies() -> list[tuple[bytes, str]]:
    """POOL generated workflow_job bodies (~8 KB each) and their signatures."""
    return [(body, sign(SECRET, body)) for body in generated_bodies(POOL, seed=31, first_job=2_000_000_000)]


def lua_script(path: Path, bodies: list[tuple[bytes, str]]) -> None:
    lines = ["local bodies = {}", "local sigs = {}"]
    for n, (body, signature) in enumerate(bodies, start=1):
        text = body.decode()
        if "]==]" in text:
            raise RuntimeError("a body holds the Lua long-bracket terminator")
        lines.append(f"bodies[{n}] = [==[{text}]==]")
        lines.append(f'sigs[{n}] = "{signature}"')
    lines += [
        "local counter = 0",
        "local prefix = 'w'",
        # setup() and done() run in wrk's main Lua state, request()/response() in each thread's own: the counts are
        # thread globals, read back through the thread objects setup() kept.
        "local threads = {}",
        "function setup(thread)",
        "  thread:set('tid', tostring(math.random(1, 1e9)))",
        "  thread:set('lane', #threads)",  # each thread its own bodies: a body sent twice would be a duplicate
        "  table.insert(threads, thread)",
        "end",
        "function init(args) prefix = 'w' .. tid .. '-' .. tostring(os.time()) end",
        "function request()",
        "  counter = counter + 1",
        f"  local i = ((counter * {WRK_THREADS} + lane) % {POOL}) + 1",
        "  local headers = {['Content-Type'] = 'application/json', ['X-GitHub-Event'] = 'workflow_job',",
        "    ['X-GitHub-Delivery'] = prefix .. '-' .. counter, ['X-Hub-Signature-256'] = sigs[i]}",
        "  return wrk.format('POST', '/webhooks/github', headers, bodies[i])",
        "end",
        "bad = 0",
        "new = 0",
        "answered = 0",
        "function response(status, headers, body)",
        "  answered = answered + 1",
        "  if status >= 300 then bad = bad + 1 elseif status == 202 then new = new + 1 end",
        "end",
        "function done(summary, latency, requests)",
        "  local b, n, a = 0, 0, 0",
        "  for _, t in ipairs(threads) do b = b + t:get('bad'); n = n + t:get('new'); a = a + t:get('answered') end",
        "  io.write(string.format('bad_status %d\\nnew_status %d\\nanswered %d\\n', b, n, a))",
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")


def start(target: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    path = os.pathsep.join(filter(None, (str(ROOT), str(ROOT / "bench"), env.get("PYTHONPATH"))))
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", str(ROOT / "deploy/gunicorn.conf.py"), target,
         "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": path},
        stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"gunicorn {target} did not start (see {log})")


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(wrk: str, port: int, script: Path, seconds: float, threads: int,  # noqa: PLR0917
            connections: int, cpu_of: tuple[list[int], int] | None = None) -> dict[str, float]:
    """wrk's figures; with `cpu_of` (the server's pids, Redis's pid), also the CPU each side spent per request."""
    before = _cpu(cpu_of)
    out = subprocess.run([wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s",
                          str(script), f"http://127.0.0.1:{port}/webhooks/github"],
                         capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = int(re.search(r"bad_status (\d+)", out).group(1))  # type: ignore[union-attr]
    new = int(re.search(r"new_status (\d+)", out).group(1))  # type: ignore[union-attr]
    answered = int(re.search(r"answered (\d+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Socket errors: (.*)", out)
    web_cpu, redis_cpu = (after - start for after, start in zip(_cpu(cpu_of), before, strict=True))
    return {"rps": rps, "p50": p50, "p99": p99, "bad": bad, "new": new, "requests": answered,
            "socket_errors": 1.0 if errors else 0.0,
            "web_us": web_cpu / max(1, answered) * 1e6, "redis_us": redis_cpu / max(1, answered) * 1e6}


def app_cpu(env: dict[str, str], modules: dict[str, str]) -> dict[str, float]:
    """bench/app_cpu.py's figures, by server name: the app's own CPU a delivery, outside any server."""
    path = os.pathsep.join((str(ROOT), str(ROOT / "bench")))
    out = subprocess.run([sys.executable, str(ROOT / "bench/app_cpu.py"), *modules.values()], cwd=ROOT,
                         env={**os.environ, **env, "PYTHONPATH": path}, capture_output=True, text=True, check=True,
                         timeout=600).stdout
    by_module: dict[str, float] = json.loads(out.splitlines()[-1])
    return {name: by_module[module] for name, module in modules.items()}


def _cpu(cpu_of: tuple[list[int], int] | None) -> tuple[float, float]:
    """CPU seconds so far of the server (master and workers) and of Redis."""
    if cpu_of is None:
        return 0.0, 0.0
    pids, redis_pid = cpu_of
    return sum(cpu_seconds(pid) for pid in pids), cpu_seconds(redis_pid)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="deliveries per second of the paced run")
    parser.add_argument("--appendfsync", choices=("always", "everysec"), default="always",
                        help="Redis's AOF fsync: always is runnerguard's durability promise (deploy/redis.conf); "
                             "everysec shows what that promise costs")
    args = parser.parse_args()
    wrk = ensure_wrk()
    tmp = Path(tempfile.mkdtemp(prefix="runnerguard-bench-wrk-"))
    server = start_redis(data_dir=tmp / "redis", appendonly=True, appendfsync=args.appendfsync)
    env = {"GITHUB_WEBHOOK_SECRET": SECRET, "REDIS_URL": server.url, "GUNICORN_CONTROL_SOCKET": ""}
    servers: list[subprocess.Popen[bytes]] = []
    try:
        script = tmp / "deliveries.lua"
        bodies = signed_bodies()
        lua_script(script, bodies)
        bare, bare_port = start("bare_app:create_app()", env, tmp / "bare.log")
        servers.append(bare)
        web, web_port = start("app:create_app()", env, tmp / "web.log")
        servers.append(web)
        least, least_port = start("min_intake_app:create_app()", env, tmp / "min.log")
        servers.append(least)
        one, one_port = start("one_write_app:create_app()", env, tmp / "one.log")
        servers.append(one)
        ports = {"bare": bare_port, "rg": web_port, "min": least_port, "one": one_port}
        for port in ports.values():
            run_wrk(wrk, port, script, 1, WRK_THREADS, WRK_CONNECTIONS)  # warm each (templates, script load, imports)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
        store = redis.Redis.from_url(server.url)
        redis_pid = int(store.info("server")["process_id"])
        pids = {"bare": bare.pid, "rg": web.pid, "min": least.pid, "one": one.pid}
        for _ in range(args.rounds):
            for name, port in ports.items():
                store.flushall()  # every body new again (runnerguard's intake puts its job templates back itself)
                runs[name].append(run_wrk(wrk, port, script, args.seconds, WRK_THREADS, WRK_CONNECTIONS,
                                          cpu_of=(gunicorn_pids(pids[name]), redis_pid)))
        store.flushall()
        ratios = [r["rps"] / b["rps"] for r, b in zip(runs["rg"], runs["bare"], strict=True)]
        rg_rps = statistics.median(r["rps"] for r in runs["rg"])
        bare_rps = statistics.median(r["rps"] for r in runs["bare"])
        rg_p99 = statistics.median(r["p99"] for r in runs["rg"])
        bare_p99 = statistics.median(r["p99"] for r in runs["bare"])
        bad = sum(int(r["bad"]) for r in runs["rg"])
        min_rps = statistics.median(r["rps"] for r in runs["min"])
        min_p99 = statistics.median(r["p99"] for r in runs["min"])
        one_rps = statistics.median(r["rps"] for r in runs["one"])
        one_p99 = statistics.median(r["p99"] for r in runs["one"])
        new_share = sum(r["new"] for r in runs["rg"]) / max(1.0, sum(r["requests"] for r in runs["rg"]))
        requests = build_requests(bodies, int(args.rate * args.paced_seconds), f"paced{time.time_ns()}")
        latencies, paced_bad = paced(web_port, requests, args.rate)
        paced_p50, paced_p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
        store.flushall()
        least_latencies, _ = paced(least_port, requests, args.rate)  # the same requests, new to it too
        least_p99 = percentile(least_latencies, 99) * 1000
        rows = [
            ("intake, wrk 2 threads x 16 conns", f"{rg_rps:,.0f} req/s, p99 {rg_p99:.1f} ms",
             f"bare Flask: {bare_rps:,.0f} req/s, p99 {bare_p99:.1f} ms", f"{rg_rps / bare_rps:.2f}x",
             ">= 0.8x", "rounds " + ", ".join(f"{x:.2f}" for x in ratios) + f"; non-2xx {bad}; "
             f"202 {new_share:.0%} (the rest: bodies of the pool seen before, 200 duplicate)"),
            ("least durable intake (bench/min_intake_app.py)", f"{min_rps:,.0f} req/s, p99 {min_p99:.1f} ms",
             f"bare Flask: {bare_rps:,.0f} req/s", f"{min_rps / bare_rps:.2f}x", "",
             "verify + parse + one script, nothing else: this stack's ceiling with the durability promise"),
            ("one durable write (bench/one_write_app.py)", f"{one_rps:,.0f} req/s, p99 {one_p99:.1f} ms",
             f"bare Flask: {bare_rps:,.0f} req/s", f"{one_rps / bare_rps:.2f}x", "",
             "the bare view plus one SET of 1 byte: what one acknowledged write costs by itself"),
            (f"ack at a steady {args.rate:,.0f}/s (open loop)", f"p99 {paced_p99:.1f} ms",
             f"p50 {paced_p50:.1f} ms", f"{len(latencies):,} acks", "p99 < 10 ms",
             f"non-2xx {paced_bad}; the least durable intake: p99 {least_p99:.1f} ms"),
            ("reference", NODE_REFERENCE, "", "", "", "not run here"),
        ]
        print_table(f"runnerguard intake under wrk ({os.cpu_count()} cores, deploy/gunicorn.conf.py for both, "
                    f"Redis appendfsync {args.appendfsync}, {args.seconds:g} s x {args.rounds} rounds)",
                    rows, ("measure", "runnerguard", "baseline", "ratio / rate", "target", "notes"))
        in_app = app_cpu(env, {"bare": "bare_app", "one": "one_write_app", "min": "min_intake_app", "rg": "app"})
        names = {"bare": "bare Flask (bench/bare_app.py)", "one": "one durable write (bench/one_write_app.py)",
                 "min": "least durable intake (bench/min_intake_app.py)", "rg": "runnerguard"}
        cpu_rows = [(names[name], f"{statistics.median(r['rps'] for r in runs[name]):,.0f}",
                     f"{statistics.median(r['web_us'] for r in runs[name]):,.0f}",
                     f"{statistics.median(r['redis_us'] for r in runs[name]):,.0f}", f"{in_app[name]:,.0f}")
                    for name in ("bare", "one", "min", "rg")]
        print_table("CPU per request under the same wrk load (from /proc/<pid>/stat, medians of the rounds), and in "
                    "the app alone (bench/app_cpu.py: its WSGI callable in one process, one request at a time)",
                    cpu_rows, ("server", "req/s", "web CPU us/request", "Redis CPU us/request", "app alone us/request"))
        cpu = {f"{name}_{side}_us": round(statistics.median(r[f"{side}_us"] for r in runs[name]))
               for name in ports for side in ("web", "redis")}
        cpu.update({f"{name}_app_us": round(value) for name, value in in_app.items()})
        print(json.dumps({**cpu, "wrk_ratio": round(rg_rps / bare_rps, 3), "min_ratio": round(min_rps / bare_rps, 3),
                          "min_rps": round(min_rps), "rg_rps": round(rg_rps),
                          "one_write_ratio": round(one_rps / bare_rps, 3), "one_write_rps": round(one_rps),
                          "bare_rps": round(bare_rps), "paced_p99_ms": round(paced_p99, 2),
                          "paced_p50_ms": round(paced_p50, 2), "least_paced_p99_ms": round(least_p99, 2)}))
    finally:
        for process in servers:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
