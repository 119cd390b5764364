"""Shared pieces of the benchmarks: a realistic signed delivery, gunicorn under test, a load generator."""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from devtools.payloads import PayloadFactory  # noqa: E402
from devtools.redis_server import free_port  # noqa: E402
from runnerguard.domain.signatures import sign  # noqa: E402

SECRET = "bench-secret"
SHARED_EXAMPLE = ROOT.parent / "shared/fixtures/github/webhooks/workflow_job/in_progress.with-queued-steps.payload.json"


def generated_bodies(count: int, *, seed: int, first_job: int) -> list[bytes]:
    """`count` generated workflow_job bodies (~8 KB, each job's three deliveries in turn), every one new: the intake
    answers a body it has seen before, under any delivery id, as a duplicate that writes nothing."""
    factory = PayloadFactory(seed=seed)
    bodies: list[bytes] = []
    job = first_job
    while len(bodies) < count:
        bodies += [body for _action, body in factory.job(job, time.time())]
        job += 1
    return bodies[:count]


def job_body(job_id: int = 1, action: str = "in_progress", pad_to: int = 8192) -> bytes:
    """A ~8 KB workflow_job payload: GitHub's own example where ../shared has it, padded like a real one."""
    if SHARED_EXAMPLE.exists():
        payload = json.loads(SHARED_EXAMPLE.read_text())
    else:
        payload = {"action": action, "repository": {"id": 1, "full_name": "octo/app"}, "workflow_job": {}}
    payload["action"] = action
    job = payload["workflow_job"]
    # Recent timestamps: the intake ignores workflow_job bodies older than RUNNERGUARD_MAX_DELIVERY_AGE_HOURS.
    created, started = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - ago)) for ago in (120, 60))
    job.update(id=job_id, run_id=job_id, run_attempt=1, labels=["self-hosted", "Linux", "X64"],
               created_at=created, started_at=started, status=action,
               runner_name="laptop-extra", runner_id=22, name="build", workflow_name="CI")
    body = json.dumps(payload)
    if len(body) < pad_to:
        payload["padding"] = "x" * (pad_to - len(body) - 16)
        body = json.dumps(payload)
    return body.encode()


def headers_for(body: bytes, guid: str, event: str = "workflow_job") -> dict[str, str]:
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": guid, "X-Hub-Signature-256": sign(SECRET, body),
            "Content-Type": "application/json", "Content-Length": str(len(body))}


@dataclass
class Gunicorn:
    process: subprocess.Popen[bytes]
    port: int

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_gunicorn(target: str, env: dict[str, str], workers: int, threads: int = 1,
                   log: Path | None = None) -> Gunicorn:
    """`log`: where the server's stderr goes (the app's JSON log lines), as a journal would take them."""
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), target, "--bind", f"127.0.0.1:{port}", "--workers",
         str(workers), "--worker-class", "gthread" if threads > 1 else "sync", "--threads", str(threads),
         "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}"},
        stderr=log.open("ab") if log is not None else None,
    )
    return wait_healthy(process, port, name=target, timeout=20, every=0.1)


def wait_healthy(process: subprocess.Popen[bytes], port: int, *, name: str, timeout: float,
                 every: float) -> Gunicorn:
    """The gunicorn once its /healthz answers; killed, and an error, if it does not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return Gunicorn(process, port)
        except OSError:
            time.sleep(every)
    process.kill()
    raise RuntimeError(f"gunicorn {name} did not start")


# Bodies each load process signs before its clock starts, one per request: the intake answers a body it has seen
# under another delivery id as a 200 duplicate that writes nothing, so one body sent again and again would measure
# that path (it did until 2026-12-01).
BODIES_PER_CLIENT = 6_000


def _closed_loop(port: int, seconds: float, tag: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    first = 30_000_000 + (zlib.crc32(tag.encode()) % 10_000) * BODIES_PER_CLIENT
    signed = [(body, headers_for(body, "")) for body in (job_body(job_id=first + n) for n in range(BODIES_PER_CLIENT))]
    count = errors = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body, headers = signed[count % BODIES_PER_CLIENT]
        try:
            conn.request("POST", "/webhooks/github", body=body,
                         headers={**headers, "X-GitHub-Delivery": f"{tag}-{count}"})
            status = conn.getresponse().status
            if status >= 300 and status != 204:
                errors += 1
        except (OSError, http.client.HTTPException):
            errors += 1
        finally:
            conn.close()
        count += 1
    out.put((count, errors))


def throughput(port: int, seconds: float, clients: int, tag: str) -> tuple[float, int]:
    """Closed-loop load from `clients` separate processes: requests per second, and errors."""
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [mp.Process(target=_closed_loop, args=(port, seconds, f"{tag}-{i}-{time.time_ns()}", out))
             for i in range(clients)]
    for p in procs:
        p.start()
    # A client that died must not hang the benchmark: wait a bounded time, count what came back.
    results = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    return sum(r[0] for r in results) / seconds, sum(r[1] for r in results)


def cpu_seconds(pid: int) -> float:
    """The CPU a process has used so far, user and system (utime + stime, fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gunicorn_pids(master: int) -> list[int]:
    """A gunicorn master and its workers."""
    children: list[int] = []
    for task in Path(f"/proc/{master}/task").iterdir():
        children += [int(p) for p in (task / "children").read_text().split()]
    return [master, *children]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def print_table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
