"""The reliability runs' load: realistic signed workflow_job lifecycles, sent open-loop at a steady rate."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runnerguard.domain.signatures import sign

LABELS = ["self-hosted", "Linux", "X64", "fedora", "nobara"]
RUNNER = {"runner_name": "laptop-extra", "runner_id": 22, "runner_group_name": "Default"}
PAD_TO = 8192  # real workflow_job payloads (repository, sender, steps) run to ~8 KB
SENDER_THREADS = 48  # enough that a slow answer never delays the next send: the schedule is the only pacing


@dataclass(frozen=True)
class Delivery:
    """One delivery to send: its id, the job it describes, and the exact bytes to sign."""

    guid: str
    job_id: int
    action: str
    body: bytes


@dataclass(frozen=True)
class Answer:
    """What the service said: status (0: no HTTP answer), when it was due and sent (epoch), latency from due."""

    guid: str
    status: int
    due: float
    latency: float
    error: str = ""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_payloads(job_id: int, conclusion: str, *, created: float, repo: str = "octo/fleet", repo_id: int = 9,
                 skew: float = 0.0) -> list[dict[str, Any]]:
    """queued -> in_progress -> completed for one job, as GitHub sends them; `skew` moves started_at earlier
    than created_at by that many seconds (a runner clock behind GitHub's)."""
    started = created + 45 - skew
    completed = started + 300 + job_id % 240
    common = {"id": job_id, "run_id": job_id * 10, "run_attempt": 1, "labels": LABELS, "name": f"build-{job_id % 7}",
              "workflow_name": "CI", "head_branch": "main", "created_at": iso(created)}
    events = [
        {**common, "status": "queued", "conclusion": None, "started_at": iso(created), "completed_at": None,
         "runner_name": None, "runner_id": None, "runner_group_name": None},
        {**common, "status": "in_progress", "conclusion": None, "started_at": iso(started), "completed_at": None,
         **RUNNER},
        {**common, "status": "completed", "conclusion": conclusion, "started_at": iso(started),
         "completed_at": iso(completed), **RUNNER},
    ]
    actions = ("queued", "in_progress", "completed")
    return [{"action": action, "workflow_job": job, "repository": {"id": repo_id, "full_name": repo},
             "installation": {"id": 42}, "sender": {"login": "octocat", "id": 1}}
            for action, job in zip(actions, events, strict=True)]


def encode(payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload, separators=(",", ":"))
    if len(body) < PAD_TO:
        # Stands in for the steps, URLs and sender objects a real payload carries.
        payload = {**payload, "padding": "x" * (PAD_TO - len(body) - 14)}
        body = json.dumps(payload, separators=(",", ":"))
    return body.encode()


def conclusion_for(job_id: int) -> str:
    """About 1 in 10 jobs fail and 1 in 25 are cancelled: well under the rollback threshold."""
    if job_id % 10 == 3:
        return "failure"
    if job_id % 25 == 7:
        return "cancelled"
    return "success"


def lifecycles(count: int, *, tag: str, first_job: int = 1, now: float | None = None,
               interleave: int = 20) -> list[Delivery]:
    """`count` deliveries (whole lifecycles, the last one perhaps partial), the way a busy pool interleaves them:
    jobs are taken `interleave` at a time and their events alternate, each job's events in order."""
    now = time.time() if now is None else now
    per_job = [(job_id, job_payloads(job_id, conclusion_for(job_id), created=now - 3600 + job_id % 1800))
               for job_id in range(first_job, first_job + -(-count // 3))]
    out: list[Delivery] = []
    for start in range(0, len(per_job), interleave):
        group = per_job[start:start + interleave]
        for step in range(3):
            for job_id, payloads in group:
                payload = payloads[step]
                out.append(Delivery(f"{tag}-{job_id}-{step}", job_id, payload["action"], encode(payload)))
    return out[:count]


def write_plan(path: Path, deliveries: list[Delivery]) -> None:
    with path.open("w") as fh:
        for d in deliveries:
            fh.write(json.dumps({"guid": d.guid, "job_id": d.job_id, "action": d.action,
                                 "body": d.body.decode()}) + "\n")


def read_answers(path: Path) -> list[Answer]:
    return [Answer(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def send(target: tuple[str, int], secret: str, guid: str, body: bytes, *,
         connect_timeout: float = 10) -> tuple[int, str]:
    """One signed delivery, as GitHub posts it: (status, "") or (0, why it got no answer)."""
    headers = {"X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": guid, "X-Hub-Signature-256": sign(secret, body),
               "X-GitHub-Hook-ID": "123", "Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/rg"}
    conn = http.client.HTTPConnection(*target, timeout=10)
    try:
        conn.sock = socket.create_connection(target, timeout=connect_timeout)
        conn.sock.settimeout(10)
        conn.request("POST", "/webhooks/github", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, ""
    except OSError as exc:
        return 0, f"{type(exc).__name__}: {exc}"[:200]
    finally:
        conn.close()


def send_one(port: int, secret: str, guid: str, body: bytes) -> tuple[int, str]:
    return send(("127.0.0.1", port), secret, guid, body)


def run_paced(port: int, secret: str, plan: list[tuple[str, bytes]], rate: float) -> list[Answer]:
    """Open loop against one web (see feed_open_loop)."""
    return feed_open_loop(plan, rate, lambda guid, body: send_one(port, secret, guid, body))


def feed_open_loop(plan: list[tuple[str, bytes]], rate: float,
                   deliver: Callable[[str, bytes], tuple[int, str]], *, threads: int = SENDER_THREADS) -> list[Answer]:
    """Open loop: delivery i is due at start + i / rate whatever the earlier answers took; latency counts from
    the due time, so a stall shows in the figures instead of silently slowing the sender (coordinated omission).
    `deliver(guid, body)` sends one and answers (status, error); `threads` threads call it."""
    work: queue.Queue[tuple[str, bytes, float, float] | None] = queue.Queue()
    answers: list[Answer] = []
    lock = threading.Lock()

    def sender() -> None:
        while (item := work.get()) is not None:
            guid, body, due_perf, due_wall = item
            status, error = deliver(guid, body)
            answer = Answer(guid, status, due_wall, time.perf_counter() - due_perf, error)
            with lock:
                answers.append(answer)

    senders = [threading.Thread(target=sender, daemon=True) for _ in range(threads)]
    for t in senders:
        t.start()
    start_perf, start_wall = time.perf_counter() + 0.05, time.time() + 0.05
    for i, (guid, body) in enumerate(plan):
        offset = i / rate
        delay = start_perf + offset - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        work.put((guid, body, start_perf + offset, start_wall + offset))
    for _ in senders:
        work.put(None)
    for t in senders:
        t.join(timeout=60)
    return sorted(answers, key=lambda a: a.due)


def main(argv: list[str] | None = None) -> int:
    """The separate load-generator process: reads a plan (JSON lines), writes the answers (JSON lines)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    secret = os.environ["RELIABILITY_WEBHOOK_SECRET"]  # from the parent, never on the command line
    plan = [(row["guid"], row["body"].encode()) for row in map(json.loads, args.plan.read_text().splitlines())]
    answers = run_paced(args.port, secret, plan, args.rate)
    with args.out.open("w") as fh:
        for a in answers:
            fh.write(json.dumps(a.__dict__) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
