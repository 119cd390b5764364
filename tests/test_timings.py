"""workflow_job deliveries through the real intake, Redis and RQ worker into the job timeline and its indexes."""

from __future__ import annotations

import random
import time
from typing import Any

import redis
from flask.testing import FlaskClient
from rq.registry import FailedJobRegistry

from app import create_app
from config import parse_policy
from handlers import maintenance
from runnerguard.queue import tasks as rq_tasks
from runnerguard.queue.deps import Deps
from runnerguard.queue.worker import build_worker
from runnerguard.store import deliveries, jobstore, keys, metrics
from tests.helpers import ADMIN, admin_headers, dumps, signed_headers
from tests.test_timeline import job_payload

RUNNER = {"runner_name": "laptop-extra", "runner_id": 22, "runner_group_name": "Default"}


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def job_events(job_id: int, conclusion: str, *, created: float, labels: list[str] | None = None,
               repo: str = "octo/app", repo_id: int = 3) -> list[dict[str, Any]]:
    labels = labels or ["self-hosted", "Linux", "X64", "fedora", "nobara"]
    common = {"id": job_id, "run_id": job_id * 10, "labels": labels, "created_at": iso(created)}
    started, completed = iso(created + 60), iso(created + 600)
    events = [
        job_payload("queued", **common, started_at=iso(created)),
        job_payload("in_progress", **common, started_at=started, status="in_progress", **RUNNER),
        job_payload("completed", **common, started_at=started, completed_at=completed, status="completed",
                    conclusion=conclusion, **RUNNER),
    ]
    for event in events:
        event["repository"] = {"id": repo_id, "full_name": repo}
    return events


def deliver(client: FlaskClient, payload: dict[str, Any], guid: str) -> None:
    body = dumps(payload)
    response = client.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job", guid=guid))
    assert response.status_code in (200, 202), response.get_json()


def test_jobs_recorded_by_the_worker_are_served_by_the_api(client, redis_client, drain) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    for n, conclusion in enumerate(["success", "failure", "failure", "cancelled"]):
        for i, event in enumerate(job_events(100 + n, conclusion, created=now - 3600 + n)):
            deliver(client, event, f"g-{n}-{i}")
    # 12 timeline tasks, a rollback check and a cause (or fork) check for each of the 4 completions
    assert drain() == 20
    jobs = client.get("/api/jobs?repo=octo/app", headers=admin_headers()).get_json()["jobs"]
    assert len(jobs) == 4
    first = next(j for j in jobs if j["job_id"] == 100)
    assert first["queue_seconds"] == 60.0 and first["run_seconds"] == 540.0
    assert first["pools"] == ["self-hosted"]
    assert first["runner_name"] == "laptop-extra" and first["conclusion"] == "success"
    assert set(first) >= {"repo", "job_id", "run_id", "run_attempt", "workflow", "name", "labels", "status",
                          "created_at", "started_at", "completed_at"}
    pools = client.get("/api/pools", headers=admin_headers()).get_json()["pools"]
    assert pools[0]["name"] == "self-hosted"
    # cancelled counts neither way: 2 failed of 3 finished
    assert (pools[0]["finished_24h"], pools[0]["failed_24h"]) == (3, 2)
    assert pools[0]["failure_rate_24h"] == round(2 / 3, 4)
    delivery = client.get("/api/deliveries/g-1-2", headers=admin_headers()).get_json()
    assert delivery["state"] == "done" and delivery["event"] == "workflow_job" and delivery["action"] == "completed"


def test_out_of_order_and_repeated_deliveries_end_in_the_same_state(client, redis_client, drain) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    events = [(f"o-{n}-{i}", e) for n in range(5)
              for i, e in enumerate(job_events(200 + n, "failure" if n % 2 else "success", created=now - 7200))]
    shuffled = events + random.Random(7).sample(events, 6)
    random.Random(3).shuffle(shuffled)
    for guid, event in shuffled:
        deliver(client, event, guid)
    drain()
    state_a = {m.decode(): jobstore.decode(redis_client, redis_client.get(keys.job(3, int(m.decode().split(":")[1]))))
               for m in (x.encode() for x in jobstore.created_since(redis_client, 0))}
    assert len(state_a) == 5
    assert jobstore.window_counts(redis_client, "self-hosted", now - 86400) == (5, 2)
    # the same events again, in order, as fresh deliveries (a replay): nothing changes
    for guid, event in events:
        deliver(client, event, guid + "-again")
    drain()
    state_b = {m.decode(): jobstore.decode(redis_client, redis_client.get(keys.job(3, int(m.decode().split(":")[1]))))
               for m in (x.encode() for x in jobstore.created_since(redis_client, 0))}
    for record in list(state_a.values()) + list(state_b.values()):
        record.pop("seen")  # the only field that depends on when deliveries arrived
    assert state_a == state_b
    assert jobstore.window_counts(redis_client, "self-hosted", now - 86400) == (5, 2)


def test_pools_from_the_policy_follow_githubs_label_rule(settings, redis_client, drain) -> None:  # type: ignore[no-untyped-def]

    policy = parse_policy({"pool": [
        {"name": "laptop", "labels": ["self-hosted", "Linux", "X64", "fedora", "nobara"]},
        {"name": "gpu", "labels": ["self-hosted", "linux", "gpu"]},
    ]})
    client = create_app(settings).test_client()
    now = time.time()
    for i, e in enumerate(job_events(1, "failure", created=now - 100, labels=["self-hosted", "linux"])):
        deliver(client, e, f"a{i}")
    for i, e in enumerate(job_events(2, "failure", created=now - 100, labels=["SELF-HOSTED", "fedora"])):
        deliver(client, e, f"b{i}")
    for i, e in enumerate(job_events(3, "failure", created=now - 100, labels=["ubuntu-latest"])):
        deliver(client, e, f"c{i}")
    drain(policy=policy)
    by_id = {j["job_id"]: j for j in jobstore.find(redis_client)}
    assert by_id[1]["pools"] == ["gpu", "laptop"]
    assert by_id[2]["pools"] == ["laptop"]
    assert by_id[3]["pools"] == []  # GitHub-hosted: recorded, in no pool
    assert jobstore.window_counts(redis_client, "laptop", now - 86400) == (2, 2)
    assert jobstore.window_counts(redis_client, "gpu", now - 86400) == (1, 1)


def test_windows_count_by_the_jobs_completed_at_not_arrival(client, redis_client, drain) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    for i, e in enumerate(job_events(300, "failure", created=now - 3 * 86400)):  # finished 3 days ago, arriving now
        deliver(client, e, f"old-{i}")
    for i, e in enumerate(job_events(301, "failure", created=now - 3600)):
        deliver(client, e, f"new-{i}")
    drain()
    assert jobstore.window_counts(redis_client, "self-hosted", now - 86400) == (1, 1)
    assert jobstore.window_counts(redis_client, "self-hosted", now - 7 * 86400) == (2, 2)


def test_retention_drops_old_jobs_from_the_indexes(settings, redis_client, drain) -> None:  # type: ignore[no-untyped-def]

    short = settings.with_overrides(job_retention_days=1)
    client = create_app(short).test_client()
    now = time.time()
    for i, e in enumerate(job_events(400, "failure", created=now - 3 * 86400)):
        deliver(client, e, f"r-{i}")
    for i, e in enumerate(job_events(401, "success", created=now - 600)):
        deliver(client, e, f"s-{i}")
    deps = Deps.from_settings(short, client=redis_client)
    build_worker(redis_client, ["events"], deps).work(burst=True)
    assert len(jobstore.index_state(redis_client, "self-hosted")["finished"]) == 1
    assert [j["job_id"] for j in jobstore.find(redis_client)] == [401]
    assert 0 < redis_client.ttl(keys.job(3, 401)) <= 86400


def test_payload_missing_fields_is_failed_for_good_with_a_reason(client, redis_client, drain) -> None:  # type: ignore[no-untyped-def]
    payload = job_payload("queued")
    del payload["workflow_job"]["id"]
    deliver(client, payload, "broken-1")
    drain()
    delivery = deliveries.load(redis_client, "broken-1")
    assert delivery is not None and delivery.state == "failed"
    assert "missing id" in delivery.errors["timings"]
    registry = FailedJobRegistry("events", connection=redis_client)
    assert registry.get_job_ids() == ["broken-1_timings"]
    assert rq_tasks.queue("events", redis_client).count == 0  # not retried
    attempts = deliveries.attempts(redis_client, "broken-1")
    assert [a["state"] for a in attempts] == ["failed"]


def test_admin_api_refuses_bad_tokens_and_bad_queries(client: FlaskClient, redis_client: redis.Redis) -> None:
    assert client.get("/api/jobs").status_code == 401
    assert client.get("/api/jobs", headers=admin_headers("wrong")).status_code == 403
    assert client.get(f"/api/jobs?token={ADMIN}").status_code == 401
    assert client.get("/api/jobs", headers={"Authorization": "Basic dGVzdA=="}).status_code == 403
    bad = client.get("/api/jobs?since=yesterday", headers=admin_headers())
    assert bad.status_code == 400 and "since" in bad.get_json()["error"]
    assert client.get("/api/jobs?since=2026-11-27T10:00:00", headers=admin_headers()).status_code == 400
    assert client.get("/api/jobs?limit=0", headers=admin_headers()).status_code == 400
    assert client.get("/api/deliveries/nope", headers=admin_headers()).status_code == 404


def test_admin_api_is_disabled_without_a_token(settings, redis_client) -> None:  # type: ignore[no-untyped-def]

    client = create_app(settings.with_overrides(admin_token="")).test_client()
    response = client.get("/api/jobs", headers=admin_headers(""))
    assert response.status_code == 403 and "disabled" in response.get_json()["error"]


def test_job_counters_and_histograms_count_each_job_once(client, redis_client, drain) -> None:  # type: ignore[no-untyped-def]

    now = time.time()
    events = job_events(600, "failure", created=now - 3600)
    for i, e in enumerate(events + events):  # every delivery twice, under different ids (a redelivery storm)
        deliver(client, e, f"m-{i}")
    drain()
    # a failed job is counted once, by its cause task, with the cause it first got
    labels = {"pool": "self-hosted", "repo": "octo/app", "conclusion": "failure", "cause": "unknown"}
    assert metrics.value(redis_client, "runnerguard_jobs_total", labels) == 1
    assert metrics.value(redis_client, "runnerguard_job_run_seconds_count", {"pool": "self-hosted"}) == 1
    assert metrics.value(redis_client, "runnerguard_job_run_seconds_bucket", {"pool": "self-hosted", "le": "600"}) == 1
    assert metrics.value(redis_client, "runnerguard_job_run_seconds_bucket", {"pool": "self-hosted", "le": "300"}) == 0
    assert metrics.value(redis_client, "runnerguard_job_queue_seconds_sum", {"pool": "self-hosted"}) == 60


def test_the_periodic_trim_enforces_retention_where_nothing_is_written_any_more(client, redis_client, drain) -> None:  # type: ignore[no-untyped-def]

    now = time.time()
    for i, e in enumerate(job_events(700, "failure", created=now - 2 * 86400, repo="quiet/repo", repo_id=9)):
        deliver(client, e, f"q-{i}")
    drain()
    assert [r["job_id"] for r in jobstore.find(redis_client, repo="quiet/repo")] == [700]
    short = drain.deps.settings.with_overrides(job_retention_days=1, delivery_retention_days=1)
    removed = maintenance.trim(redis=redis_client, settings=short, clock=time.time)
    assert removed >= 3  # the job's entries in the job and pool indexes, and the old deliveries' index entries
    assert jobstore.find(redis_client, repo="quiet/repo") == []
    assert jobstore.index_state(redis_client, "self-hosted")["finished"] == []


def test_the_scheduler_keeps_the_dashboard_summaries_warm(client, redis_client, drain) -> None:  # type: ignore[no-untyped-def]

    now = time.time()
    for i, e in enumerate(job_events(800, "success", created=now - 3 * 86400)):
        deliver(client, e, f"w-{i}")
    drain()
    assert not list(redis_client.scan_iter("rg:dash:summary:*"))
    assert maintenance.warm_dashboard(redis=redis_client, policy=drain.deps.policy, clock=time.time) == 1  # one pool
    assert len(list(redis_client.scan_iter("rg:dash:summary:*"))) > 0
