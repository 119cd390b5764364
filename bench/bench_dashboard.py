"""Dashboard render time with 1 k and 100 k jobs over 30 days (target: under 200 ms), against a naive baseline.

Jobs are written through jobstore.upsert (the worker's own path, so every index is as in production). The naive
baseline loads every record of the last 7 days, which is what the dashboard would do without the index tricks.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import redis  # noqa: E402

from app import create_app  # noqa: E402
from config import load_settings  # noqa: E402
from devtools.redis_server import start_redis  # noqa: E402
from runnerguard.domain.events import parse_workflow_job  # noqa: E402
from runnerguard.domain.timeline import format_time  # noqa: E402
from runnerguard.store import jobstore  # noqa: E402

ADMIN = "bench-admin-token-of-at-least-32-chars"  # Settings asks for 32+ characters
DAY = 86400
REPEATS = 7
SIZES = tuple(int(a) for a in sys.argv[1:]) or (1_000, 100_000)
CONCLUSIONS = ["success"] * 85 + ["failure"] * 10 + ["cancelled"] * 3 + ["timed_out"] * 2


def payload(job_id: int, created: float, rng: random.Random, now: float) -> dict[str, object]:
    queue = rng.expovariate(1 / 90)
    run = rng.lognormvariate(6.3, 0.8)
    started, completed = created + queue, created + queue + run
    done = completed < now
    job = {"id": job_id, "run_id": job_id // 3, "run_attempt": 1, "workflow_name": "CI", "name": "build",
           "head_branch": "main", "labels": ["self-hosted", "Linux", "X64"], "runner_name": f"host-{job_id % 4}",
           "runner_id": job_id % 4, "runner_group_name": "Default", "status": "completed" if done else "in_progress",
           "conclusion": rng.choice(CONCLUSIONS) if done else None, "created_at": format_time(created),
           "started_at": format_time(started), "completed_at": format_time(completed) if done else None,
           "html_url": f"https://github.com/octo/app/actions/runs/{job_id}"}
    return {"action": "completed" if done else "in_progress", "workflow_job": job,
            "repository": {"id": 1 + job_id % 5, "full_name": f"octo/app{job_id % 5}"}}


def seed(client: redis.Redis, start: int, stop: int, total: int, now: float) -> None:
    """Jobs start..stop of `total`, evenly over the last 30 days."""
    rng = random.Random(start)
    span = 30 * DAY
    rule = jobstore.CountingRule()
    for n in range(start, stop):
        created = now - span + span * n / total + rng.random()
        snapshot = parse_workflow_job(payload(n + 1, created, rng, now))
        jobstore.upsert(client, snapshot, seen_at=created, pools=["self-hosted"], rule=rule,
                        retention_seconds=31 * DAY, now=now)


def timed(fn: object) -> float:
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> int:
    server = start_redis()
    try:
        client = redis.Redis.from_url(server.url)
        settings = load_settings({"GITHUB_WEBHOOK_SECRET": "bench", "ADMIN_TOKEN": ADMIN, "REDIS_URL": server.url,
                                  "RUNNERGUARD_HOST": "bench"})
        app = create_app(settings, redis_client=client)
        web = app.test_client()
        now = time.time()
        rows = []
        for size in SIZES:
            t0 = time.perf_counter()
            # every size spread over the same 30 days: reseed from scratch, then log in (sessions live in Redis)
            client.flushall()
            seed(client, 0, size, size, now)
            seed_s = time.perf_counter() - t0
            page = web.get("/login").get_data(as_text=True)
            token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            assert web.post("/login", data={"token": ADMIN, "csrf_token": token}).status_code == 302

            def render() -> None:
                assert web.get("/").status_code == 200

            def naive() -> None:
                jobstore.find(client, pool="self-hosted", since=now - 7 * DAY, limit=10**7)

            started = time.perf_counter()
            render()  # cold: no bucket summary kept yet, every bucket folded from the indexes
            cold = (time.perf_counter() - started) * 1000
            rows.append((size, cold, timed(render), timed(lambda: web.get("/api/scorecard", headers={
                "Authorization": f"Bearer {ADMIN}"})), timed(lambda: web.get("/metrics")), timed(naive), seed_s))
        print(f"{'jobs (30 days)':>15} {'cold render ms':>15} {'warm render ms':>15} {'scorecard ms':>13} "
              f"{'metrics ms':>11} {'naive 7d load ms':>17} {'seed s':>7}")
        for size, cold, warm, score, metrics_ms, naive_ms, seed_s in rows:
            print(f"{size:>15,} {cold:>15.1f} {warm:>15.1f} {score:>13.1f} {metrics_ms:>11.1f} {naive_ms:>17.1f} "
                  f"{seed_s:>7.1f}")
        print(f"warm: median of {REPEATS} renders; cold: the first render after seeding (settled 6 h buckets are "
              "then kept for a day, expiring staggered). Target: under 200 ms at 100,000 jobs.")
        return 0 if rows[-1][2] < 200 else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
