"""GET /metrics end to end: real deliveries, a real worker, Redis-backed counters and scrape-time gauges."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from runnerguard.queue import tasks as rq_tasks
from runnerguard.store import prewarm_stats, rollback_state
from tests.test_timings import deliver, job_events

METRICS_TOKEN = "scrape-token"


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples if s.name == name}


def test_metrics_after_real_jobs_and_replays(client, redis_client, drain) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    for n, conclusion in enumerate(["success", "failure", "failure", "success"]):
        for i, event in enumerate(job_events(500 + n, conclusion, created=now - 5000 + n)):
            deliver(client, event, f"m-{n}-{i}")
    drain()
    # the same events again as fresh deliveries (a replay): counters must not move
    for n, conclusion in enumerate(["success", "failure", "failure", "success"]):
        for i, event in enumerate(job_events(500 + n, conclusion, created=now - 5000 + n)):
            deliver(client, event, f"m-again-{n}-{i}")
    drain()
    rollback_state.save(redis_client, rollback_state.RollbackState(pool="self-hosted", repo="octo/app",
                                                                   state="pr_open", pr_url="https://x/pull/1"),
                        event="opened", now=now)
    prewarm_stats.record(redis_client, "vosk", "laptop-extra", counter="hits", state="installed", now=now)
    prewarm_stats.record(redis_client, "vosk", "laptop-extra", counter="misses", state="installed", now=now)
    rq_tasks.queue("events", redis_client).enqueue("json.loads", "not json")
    rq_tasks.queue("events", redis_client).enqueue("json.loads", "[]")
    drain()
    rq_tasks.queue("github", redis_client).enqueue("json.loads", "[]")  # waits: no worker runs now

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    text = response.get_data(as_text=True)
    jobs = samples(text, "runnerguard_jobs_total")
    # the cause label: a failed job's first cause (no evidence either way here), "none" for the others
    assert jobs[(("cause", "unknown"), ("conclusion", "failure"), ("pool", "self-hosted"), ("repo", "octo/app"))] == 2
    assert jobs[(("cause", "none"), ("conclusion", "success"), ("pool", "self-hosted"), ("repo", "octo/app"))] == 2
    assert samples(text, "runnerguard_job_run_seconds_count")[(("pool", "self-hosted"),)] == 4
    assert samples(text, "runnerguard_job_queue_seconds_sum")[(("pool", "self-hosted"),)] == 240
    deliveries = samples(text, "runnerguard_webhook_deliveries_total")
    assert sum(v for k, v in deliveries.items() if ("event", "workflow_job") in k) == 24
    assert samples(text, "runnerguard_pool_failure_rate") == {(("pool", "self-hosted"),): 0.5}
    states = samples(text, "runnerguard_rollback_state")
    assert states[(("pool", "self-hosted"), ("repo", "octo/app"), ("state", "pr_open"))] == 1
    assert states[(("pool", "self-hosted"), ("repo", "octo/app"), ("state", "healthy"))] == 0
    assert samples(text, "runnerguard_prewarm_total")[
        (("cache", "vosk"), ("host", "laptop-extra"), ("result", "miss"))] == 1
    assert samples(text, "runnerguard_cache_hit_rate") == {(("cache", "vosk"), ("host", "laptop-extra")): 0.5}
    # both name a function outside the task table: refused, into the failed registry
    assert samples(text, "runnerguard_failed_tasks")[(("queue", "events"),)] == 2
    assert samples(text, "runnerguard_queue_depth")[(("queue", "github"),)] == 1
    assert samples(text, "runnerguard_queue_depth")[(("queue", "events"),)] == 0
    # bounded labels: never a job id or a branch name
    assert "500" not in "".join(k for f in text_string_to_metric_families(text) for s in f.samples
                                for k in s.labels.values())


def test_metrics_token_when_set(settings, redis_client) -> None:  # type: ignore[no-untyped-def]
    client = create_app(settings.with_overrides(metrics_token=METRICS_TOKEN)).test_client()
    missing = client.get("/metrics")
    assert missing.status_code == 401 and "Bearer" in missing.headers["WWW-Authenticate"]
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": f"Basic {METRICS_TOKEN}"}).status_code == 403
    assert client.get(f"/metrics?token={METRICS_TOKEN}").status_code == 401  # never from the query string
    ok = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert ok.status_code == 200 and "# TYPE runnerguard_queue_depth gauge" in ok.get_data(as_text=True)


def test_metrics_open_by_default_and_empty_store_parses(client, redis_client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/metrics", headers={"Authorization": "Bearer whatever"})
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.get_data(as_text=True))}
    assert families["runnerguard_job_run_seconds"].type == "histogram"
    assert samples(response.get_data(as_text=True), "runnerguard_queue_depth") == {
        (("queue", "events"),): 0, (("queue", "github"),): 0}
