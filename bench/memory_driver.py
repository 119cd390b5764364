"""One run of bench_memory.py: N jobs (3 deliveries each) through the intake and a worker of the tree it runs in.

Run by bench_memory.py as `python memory_driver.py TREE PAYLOADS_PY JOBS WAIT_SECONDS MODE` with TREE either this
checkout or an extracted older commit (today's format), so both formats go through their own real code path.
MODE "rq": an RQ worker (burst) runs the tasks, and RQ's results expire; "direct": the worker's own runner
(`runner.bind`) runs each queued task in this process and the RQ job is dropped as its expiry would, ~5x faster.
Both run the `github` queue's delivery tasks too (a completed pool job's `causes` task): with no App configured
they make no GitHub call, and left queued their RQ jobs (~1.7 KB each) were counted as if they never expired.
Prints one JSON line: used_memory before and after, per job, and a breakdown by key family.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

TREE, PAYLOADS, JOBS, WAIT = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
MODE = sys.argv[5]
sys.path.insert(0, str(TREE))

import redis  # noqa: E402
from rq import Queue  # noqa: E402
from rq.registry import clean_registries  # noqa: E402

from config import load_settings  # noqa: E402
from devtools.redis_server import start_redis  # noqa: E402
from runnerguard.domain.signatures import sign  # noqa: E402
from runnerguard.queue import tasks  # noqa: E402
from runnerguard.queue.deps import Deps  # noqa: E402
from runnerguard.queue.runner import bind  # noqa: E402
from runnerguard.queue.worker import build_worker  # noqa: E402
from runnerguard.web.intake import Intake  # noqa: E402

POLICY = """
[rollback]
dry_run = true
[rollback.failure_rate]
threshold = 0.99
[[pool]]
name = "linux"
labels = ["self-hosted", "linux", "x64"]
[[pool]]
name = "gpu"
labels = ["self-hosted", "linux", "gpu"]
[[pool]]
name = "mac"
labels = ["self-hosted", "macOS", "ARM64"]
"""
FAMILIES = (("rg:delivery:", "deliveries"), ("rg:body:", "body dedupe keys"), ("rg:bodies:", "body digests"),
            ("rg:deliveries", "delivery index"), ("rg:job:", "job records"),
            ("rg:pool:", "pool indexes"), ("rg:repo:", "repo indexes"), ("rg:jobs:", "job index"),
            ("rg:cause:", "cause records"), ("rg:run:fork:", "cause records"),
            ("rq:", "RQ (after expiry)"))


def _load_payloads():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_payloads", PAYLOADS)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def used(client: redis.Redis) -> int:
    client.execute_command("MEMORY", "PURGE")
    return int(client.info("memory")["used_memory"])


def key_space(client: redis.Redis) -> int:
    """Bytes of the key space's own hash tables (keys and expiry times), which MEMORY USAGE of a key never counts:
    Redis sizes them for the most keys it has held and shrinks them only below a tenth of that."""
    db = client.memory_stats().get("db.0") or {}
    return int(db.get("overhead.hashtable.main", 0)) + int(db.get("overhead.hashtable.expires", 0))


def breakdown(client: redis.Redis) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for key in client.scan_iter(count=1000):
        name = key.decode(errors="replace")
        family = next((label for prefix, label in FAMILIES if name.startswith(prefix)), "other")
        sizes[family] = sizes.get(family, 0) + int(client.memory_usage(key, samples=0) or 0)
    return sizes


def run_directly(client: redis.Redis, deps: Deps) -> None:
    by_name = {spec.name: spec for spec in tasks.TASKS.values()}
    bound = {name: bind(spec, deps) for name, spec in by_name.items() if spec.takes_delivery}
    # events first: a cause task needs the completed record its timings task writes
    for queue in (tasks.EVENTS, tasks.GITHUB):
        while batch := client.lpop(f"rq:queue:{queue}", 500):
            for raw in batch:
                job_id = raw.decode()
                guid, task = job_id.split("_", 1)
                bound[task](guid)
                client.delete(f"rq:job:{job_id}")


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # so `finally` stops this run's redis-server


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    server = start_redis()
    policy = Path(tempfile.mkdtemp()) / "policy.toml"
    policy.write_text(POLICY)
    env = {"GITHUB_WEBHOOK_SECRET": "bench-secret", "REDIS_URL": server.url, "RUNNERGUARD_POLICY": str(policy)}
    try:
        client = redis.Redis.from_url(server.url)
        settings = load_settings({**os.environ, **env})
        deps = Deps.from_settings(settings, client=client)
        intake = Intake(settings=settings, policy=deps.policy, client=client)
        before = used(client)
        factory = _load_payloads().PayloadFactory(seed=11)
        now = time.time()
        started = time.perf_counter()
        for i in range(JOBS):
            created = now - 86400 + i * 86400 / JOBS
            for _action, body in factory.job(7_000_000_000 + i, created):
                headers = {"X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": str(uuid.uuid4()),
                           "X-Hub-Signature-256": sign("bench-secret", body), "X-GitHub-Hook-ID": "420000001",
                           "X-GitHub-Hook-Installation-Target-Type": "integration",
                           "X-GitHub-Hook-Installation-Target-ID": "1000001"}
                result = intake.accept(headers, body)
                if result.status != 202:
                    raise SystemExit(f"delivery answered {result.status}: {result.body}")
        intake_seconds = time.perf_counter() - started
        last_delivery = time.time()
        if MODE == "rq":
            worker = build_worker(client, [tasks.EVENTS, tasks.GITHUB], deps)
            worker.work(burst=True, logging_level="ERROR")
        else:
            run_directly(client, deps)
        worker_seconds = time.perf_counter() - started - intake_seconds
        # RQ keeps each finished job (RESULT_TTL, 60 s) and its registry entry until the worker's maintenance
        # (every 20 s) cleans it: wait out the TTL as the issue measures it, then clean as that maintenance does.
        # Live, a task runs within milliseconds of its delivery; here the worker starts once every delivery is in,
        # so the wait counts from its last task (the last delivery's, had they run as they came).
        time.sleep(max(0.0, max(last_delivery, time.time()) + WAIT - time.time()))
        for name in ("events", "github"):  # as each queue's own worker does: the github one's finished jobs too
            clean_registries(Queue(name, connection=client))
        after = used(client)
        sizes = breakdown(client)  # the retention table splits the total by it
        print(json.dumps({"jobs": JOBS, "before": before, "after": after, "per_job": (after - before) / JOBS,
                          "families": {k: v / JOBS for k, v in sizes.items()}, "intake_s": intake_seconds,
                          "worker_s": worker_seconds, "keys": client.dbsize(), "key_space": key_space(client)}))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
