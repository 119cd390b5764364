"""What the reliability runs verify after a run: recorded, processed exactly once, the timeline as expected."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

from devtools.reliability_load import Answer, Delivery, read_answers, write_plan
from devtools.reliability_stack import ROOT, Stack
from runnerguard.store import deliveries, jobstore, keys, metrics


@dataclass
class Row:
    """One line of the table: a scenario, what it checked, its figures, how much was lost, PASS/FAIL."""

    scenario: str
    checked: str
    figures: str = ""
    lost: int = 0
    ok: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def need(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def start_load(stack: Stack, plan: list[Delivery], rate: float, name: str) -> subprocess.Popen[bytes]:
    """The load generator as a separate process (its own interpreter and GIL), reading a plan file."""
    plan_path, out = stack.tmp / f"{name}.plan.jsonl", stack.tmp / f"{name}.answers.jsonl"
    write_plan(plan_path, plan)
    return subprocess.Popen(
        [sys.executable, "-m", "devtools.reliability_load", "--port", str(stack.web_port), "--rate", str(rate),
         "--plan", str(plan_path), "--out", str(out)],
        cwd=ROOT, env={**stack.env(), "RELIABILITY_WEBHOOK_SECRET": stack.secret},
    )


def finish_load(stack: Stack, process: subprocess.Popen[bytes], name: str, timeout: float) -> list[Answer]:
    try:
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"load generator exited with {process.returncode}")
    return read_answers(stack.tmp / f"{name}.answers.jsonl")


def run_load(stack: Stack, plan: list[Delivery], rate: float, name: str) -> list[Answer]:
    return finish_load(stack, start_load(stack, plan, rate, name), name, timeout=len(plan) / rate + 60)


def latency_figures(answers: list[Answer]) -> dict[str, float]:
    ok = [a.latency * 1000 for a in answers if a.status in (200, 202)]
    span = max(a.due + a.latency for a in answers) - min(a.due for a in answers) if answers else 0.0
    return {"p50_ms": round(percentile(ok, 50), 1), "p99_ms": round(percentile(ok, 99), 1),
            "max_ms": round(max(ok, default=float("nan")), 1), "rate_per_s": round(len(answers) / span, 1)}


def missing(client: redis.Redis, guids: list[str]) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for guid in guids:
        pipe.exists(keys.delivery(guid))
    return [g for g, present in zip(guids, pipe.execute(), strict=True) if not present]


def done_profile(client: redis.Redis, guids: list[str]) -> tuple[list[str], list[str]]:
    """(deliveries with a task never done, deliveries with a task done more than once), from the attempt logs."""
    never, rerun = [], []
    for guid in guids:
        delivery = deliveries.load(client, guid)
        if delivery is None or not delivery.tasks:
            never.append(guid)
            continue
        done = Counter(a["task"] for a in deliveries.attempts(client, guid) if a["state"] == deliveries.DONE)
        if any(done[t] == 0 for t in delivery.tasks):
            never.append(guid)
        elif any(done[t] > 1 for t in delivery.tasks):
            rerun.append(guid)
    return never, rerun


def not_exactly_once(client: redis.Redis, guids: list[str]) -> list[str]:
    """Deliveries whose attempt log does not hold exactly one "done" per task."""
    never, rerun = done_profile(client, guids)
    return never + rerun


def expected_jobs(plan: list[Delivery]) -> dict[int, tuple[str, str | None]]:
    """job id -> (status, conclusion) that the deliveries in `plan` should leave in the timeline."""
    rank = {"queued": 0, "waiting": 1, "in_progress": 2, "completed": 3}
    out: dict[int, tuple[str, str | None]] = {}
    for d in plan:
        job = json.loads(d.body)["workflow_job"]
        current = out.get(d.job_id)
        if current is None or rank[d.action] > rank[current[0]]:
            out[d.job_id] = (d.action, job.get("conclusion"))
    return out


def timeline(client: redis.Redis) -> dict[int, dict[str, Any]]:
    return {r["job_id"]: r for r in jobstore.find(client, limit=100_000)}


def timeline_mismatches(client: redis.Redis, plan: list[Delivery]) -> list[str]:
    have = timeline(client)
    out = []
    for job_id, (status, conclusion) in expected_jobs(plan).items():
        record = have.get(job_id)
        if record is None or (record["status"], record.get("conclusion")) != (status, conclusion):
            got = None if record is None else (record["status"], record.get("conclusion"))
            out.append(f"job {job_id}: want {(status, conclusion)}, got {got}")
    return out


def jobs_counted(client: redis.Redis) -> int:
    """runnerguard_jobs_total over every label set: once per finished job, however often it was processed."""
    return round(sum(v for k, v in metrics.counters(client).items() if k.startswith("runnerguard_jobs_total{")))


def completed_jobs(plan: list[Delivery]) -> int:
    return len({d.job_id for d in plan if d.action == "completed"})


def state_snapshot(client: redis.Redis) -> dict[str, Any]:
    """Everything an order of delivery could change: records (less `seen`, the arrival times), indexes, counts."""
    records = {}
    for job_id, record in timeline(client).items():
        records[job_id] = {k: v for k, v in record.items() if k != "seen"}
    indexes = {}
    for pool in sorted(m.decode() for m in client.smembers(keys.POOLS_SEEN)):  # type: ignore[union-attr]
        # Through the store: created and started live in 10-minute buckets (store/time_buckets.py), not one key.
        for name, pairs in jobstore.index_state(client, pool).items():
            indexes[f"{pool}:{name}"] = pairs
    counters = {k: v for k, v in metrics.counters(client).items() if k.startswith("runnerguard_job")}
    return {"records": records, "indexes": indexes, "counters": counters,
            "window": jobstore.window_counts(client, "self-hosted", time.time() - 86400)}


def diff_snapshots(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = []
    for part in ("records", "indexes", "counters"):
        for key in sorted(set(a[part]) | set(b[part]), key=str):
            if a[part].get(key) != b[part].get(key):
                out.append(f"{part}[{key}]: ordered {a[part].get(key)!r} != shuffled {b[part].get(key)!r}"[:300])
    if a["window"] != b["window"]:
        out.append(f"window counts: ordered {a['window']} != shuffled {b['window']}")
    return out
