"""A full Redis (maxmemory + noeviction): readiness says so, workers wait it out, retention still frees, and a
memory budget sheds non-essential writes before Redis refuses the delivery log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from app import create_app
from config import Settings
from devtools.redis_server import RedisServer, start_redis
from devtools.reliability_stack import wait_for
from runnerguard.services import retention
from runnerguard.store import deliveries, keys, metrics
from runnerguard.store.memory_budget import MemoryGauge
from runnerguard.store.redis_health import write_refusal
from tests.helpers import SECRET, dumps, signed_headers
from tests.test_timeline import job_payload

ROOT = Path(__file__).resolve().parents[1]
MAXMEMORY = 6 * 1024 * 1024
JUNK = b"x" * 65536


@pytest.fixture()
def small_redis() -> Iterator[RedisServer]:
    server = start_redis(maxmemory=MAXMEMORY)
    yield server
    server.stop()


@pytest.fixture()
def small_client(small_redis: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(small_redis.url)
    yield client
    client.close()


def fill(client: redis.Redis) -> int:
    """Write junk until Redis refuses even a few bytes: returns how many junk keys went in.

    Big values first, then smaller ones: a refused 64 KB write leaves room a small one still gets (the refused
    request's own buffer counted toward used_memory)."""
    n = 0
    for size in (len(JUNK), 4096, 256, 16):
        while True:
            try:
                client.set(f"junk:{n}", JUNK[:size])
            except redis.exceptions.OutOfMemoryError:
                break
            n += 1
    # At the brim a write of a few bytes may still slip in or not (Redis compares before each command); half a
    # megabyte below what is used now makes every write a refusal until the junk is freed.
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used - 512 * 1024)
    return n


def free(client: redis.Redis) -> None:
    for key in client.scan_iter("junk:*", count=1000):
        client.delete(key)  # DEL is allowed under OOM: that is how memory comes back


def test_fill_really_reaches_out_of_memory(small_client: redis.Redis) -> None:
    assert fill(small_client) > 10
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        small_client.set("one-more", b"y")
    assert small_client.ping()  # PING still answers: readiness needs a write probe
    assert write_refusal(small_client) == "out of memory"
    free(small_client)
    assert write_refusal(small_client) is None


def test_readyz_is_503_while_redis_refuses_writes(settings: Settings, small_redis: RedisServer,
                                                 small_client: redis.Redis) -> None:
    client = create_app(settings.with_overrides(redis_url=small_redis.url)).test_client()
    assert client.get("/readyz").status_code == 200
    fill(small_client)
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_json()["redis"] == "refusing writes"
    body = dumps(job_payload("queued", id=1))
    assert client.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job")).status_code == 503
    free(small_client)
    assert client.get("/readyz").status_code == 200
    assert client.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job")).status_code == 202


def test_readyz_is_503_when_redis_is_down(settings: Settings) -> None:
    client = create_app(settings.with_overrides(redis_url="redis://127.0.0.1:9/0")).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_json()["redis"] == "down"


def test_the_memory_gauge_reads_used_memory_at_most_once_a_second(small_client: redis.Redis) -> None:
    now = [1000.0]
    gauge = MemoryGauge(small_client, budget_bytes=1, clock=lambda: now[0])
    small_client.config_resetstat()
    assert all(gauge.over_budget() for _ in range(200))
    calls = int(small_client.info("commandstats").get("cmdstat_info", {}).get("calls", 0))
    assert calls == 1  # the gauge's one INFO (this stats read is counted after it)
    now[0] += 1.5
    gauge.over_budget()
    assert int(small_client.info("commandstats")["cmdstat_info"]["calls"]) == 3
    assert not MemoryGauge(small_client, budget_bytes=10**12).over_budget()
    assert not MemoryGauge(small_client, budget_bytes=0).over_budget()  # 0: no budget


def _prewarm_policy(tmp_path: Path) -> Path:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(f"""
[[pool]]
name = "laptop"
labels = ["self-hosted", "Linux"]
hosts = ["test-host"]

[[cache]]
name = "model"
pools = ["laptop"]
url = "https://models.example/m.zip"
sha256 = "{'0' * 64}"
unpack = "zip"
dest = "{tmp_path / 'cache/models/m'}"
""")
    return policy_file


def test_over_the_budget_the_intake_sheds_prewarm_and_metric_writes_but_records_the_delivery(
        settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> None:
    policy = _prewarm_policy(tmp_path)
    roomy = create_app(settings.with_overrides(policy_path=policy, redis_budget_bytes=10**12)).test_client()
    body = dumps(job_payload("queued", id=1))
    assert roomy.post("/webhooks/github", data=body,
                      headers=signed_headers(body, "workflow_job")).get_json()["queued"] == ["timings", "prewarm"]
    before = metrics.value(redis_client, "runnerguard_webhook_deliveries_total",
                           {"event": "workflow_job", "outcome": "accepted"})
    tight = create_app(settings.with_overrides(policy_path=policy, redis_budget_bytes=1)).test_client()
    body = dumps(job_payload("queued", id=2))
    answer = tight.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job", guid="tight-1"))
    assert answer.status_code == 202 and answer.get_json()["queued"] == ["timings"]
    stored = deliveries.load(redis_client, "tight-1")
    assert stored is not None and stored.tasks == ("timings",)
    queued = Queue("events", connection=redis_client, serializer=JSONSerializer).get_jobs()  # the central worker
    assert [job.func_name for job in queued].count("handlers.prewarm.prewarm") == 1  # only the first delivery's
    assert metrics.value(redis_client, "runnerguard_webhook_deliveries_total",
                         {"event": "workflow_job", "outcome": "accepted"}) == before


def test_the_intake_sheds_before_a_real_redis_refuses_the_delivery_log(settings: Settings, small_redis: RedisServer,
                                                                       small_client: redis.Redis,
                                                                       tmp_path: Path) -> None:
    used = int(small_client.info("memory")["used_memory"])
    budget = used + (MAXMEMORY - used) // 2
    app = create_app(settings.with_overrides(redis_url=small_redis.url, policy_path=_prewarm_policy(tmp_path),
                                             redis_budget_bytes=budget))
    client = app.test_client()
    # Fill to just past the budget, well short of maxmemory.
    n = 0
    while int(small_client.info("memory")["used_memory"]) <= budget:
        small_client.set(f"junk:{n}", JUNK)
        n += 1
    time.sleep(1.1)  # the gauge's cached reading goes stale
    body = dumps(job_payload("queued", id=3))
    answer = client.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job"))
    assert answer.status_code == 202 and answer.get_json()["queued"] == ["timings"]
    assert Queue("prewarm.test-host", connection=small_client).count == 0


def test_retention_runs_under_out_of_memory(settings: Settings, small_redis: RedisServer,
                                            small_client: redis.Redis) -> None:
    old = time.time() - max(settings.delivery_retention_seconds, settings.job_retention_seconds) - 3600
    small_client.zadd(keys.DELIVERIES_BY_TIME, {"old-1": old, "new-1": time.time()})
    small_client.zadd(keys.JOBS_BY_CREATED, {"1:1": old})
    fill(small_client)
    removed = retention.trim(small_client, settings.with_overrides(redis_url=small_redis.url), now=time.time())
    assert removed == 2
    assert small_client.zrange(keys.DELIVERIES_BY_TIME, 0, -1) == [b"new-1"]


def _env(redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNERGUARD_", "REDIS_"))}
    return {**env, "GITHUB_WEBHOOK_SECRET": SECRET, "REDIS_URL": redis_url, "RUNNERGUARD_HOST": "test-host",
            "RUNNERGUARD_LOG_LEVEL": "WARNING", "RUNNERGUARD_MAX_DELIVERY_AGE_HOURS": "0"}


@pytest.fixture()
def worker_process(small_redis: RedisServer) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen([sys.executable, "worker.py", "events"], cwd=ROOT, env=_env(small_redis.url),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    yield process
    if process.poll() is None:
        os.killpg(process.pid, 9)
    process.wait()


def test_a_worker_waits_out_a_full_redis_and_comes_back_by_itself(
        settings: Settings, small_redis: RedisServer, small_client: redis.Redis,
        worker_process: subprocess.Popen[str]) -> None:
    wait_for(lambda: len(Worker.all(connection=small_client)) == 1, timeout=20, what="worker registered")
    client: FlaskClient = create_app(settings.with_overrides(redis_url=small_redis.url)).test_client()
    # Suspend the worker, queue a delivery, fill Redis, resume (DEL works under OOM): its next writes are refused.
    time.sleep(1.2)  # the worker looks at suspension at most once a second (RunnerguardWorker)
    small_client.set("rq:suspended", 1)
    wake = dumps(job_payload("queued", id=20))  # a job wakes the waiting worker; after it, the loop sees the suspend
    assert client.post("/webhooks/github", data=wake, headers=signed_headers(wake, "workflow_job")).status_code == 202
    wait_for(lambda: Worker.all(connection=small_client)[0].get_state() == "suspended", timeout=20,
             what="worker suspended")
    body = dumps(job_payload("queued", id=21))
    assert client.post("/webhooks/github", data=body,
                       headers=signed_headers(body, "workflow_job", guid="oom-1")).status_code == 202
    old = time.time() - settings.delivery_retention_seconds - 3600
    small_client.zadd(keys.DELIVERIES_BY_TIME, {"expired-1": old})
    fill(small_client)
    small_client.delete("rq:suspended")
    time.sleep(3)
    assert worker_process.poll() is None, worker_process.stdout.read()  # type: ignore[union-attr]
    # While it waits, it keeps retention going (deletes only): the expired index entry goes.
    try:
        wait_for(lambda: small_client.zscore(keys.DELIVERIES_BY_TIME, "expired-1") is None, timeout=20,
                 what="retention under OOM")
    except TimeoutError:
        os.killpg(worker_process.pid, 9)
        raise AssertionError(worker_process.communicate()[0][-3000:]) from None
    time.sleep(2)
    assert worker_process.poll() is None, worker_process.stdout.read()  # type: ignore[union-attr]
    free(small_client)

    def done(guid: str) -> bool:
        delivery = deliveries.load(small_client, guid)
        return delivery is not None and delivery.state == "done"

    body = dumps(job_payload("queued", id=22))
    assert client.post("/webhooks/github", data=body,
                       headers=signed_headers(body, "workflow_job", guid="oom-2")).status_code == 202
    wait_for(lambda: done("oom-2"), timeout=30, what="a delivery handled after memory came back")
    assert worker_process.poll() is None
