"""A queued workflow_job, through the intake, to the central worker's pre-warm task and the hosts' work items."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis
from flask.testing import FlaskClient

from app import create_app
from config import Settings, parse_policy
from runnerguard.queue.dispatch import job_event
from runnerguard.queue.routing import prewarm_queues as queues_for_event
from runnerguard.store import host_tokens
from tests.helpers import admin_headers, dumps, signed_headers
from tests.test_timeline import job_payload

SHA = "b" * 64


def prewarm_queues_of(payload, policy):  # type: ignore[no-untyped-def]
    """The routing of a payload as the intake routes it: typed at the edge, then the queue chooser."""
    return queues_for_event(job_event("workflow_job", payload), policy)


def policy_for(tmp_path: Path, repos: list[str] | None = None) -> Any:
    cache = {"name": "vosk-small", "pools": ["laptop"], "url": "https://models.example/v.zip", "sha256": SHA,
             "unpack": "zip", "dest": str(tmp_path / "cache/vosk-models/small")}
    return parse_policy({
        "pool": [{"name": "laptop", "labels": ["self-hosted", "Linux", "X64", "fedora", "nobara"],
                  "hosts": ["test-host"]},
                 {"name": "gpu", "labels": ["self-hosted", "gpu"], "hosts": ["gpu-box"]}],
        "cache": [{**cache, "repos": repos} if repos else cache],
    })


def test_a_queued_job_goes_to_the_central_events_queue_only_when_a_host_warms_for_it(tmp_path: Path) -> None:
    policy = policy_for(tmp_path)
    assert prewarm_queues_of(job_payload("queued", labels=["self-hosted", "linux"]), policy) == ["events"]
    assert prewarm_queues_of(job_payload("queued", labels=["self-hosted", "gpu"]), policy) == []  # nothing to warm
    assert prewarm_queues_of(job_payload("queued", labels=["ubuntu-latest"]), policy) == []
    assert prewarm_queues_of({"workflow_job": {"labels": "self-hosted"}}, policy) == []


def test_queued_deliveries_become_work_for_the_host_once_per_job(settings: Settings, redis_client: redis.Redis,  # type: ignore[no-untyped-def]
                                                                  drain, tmp_path: Path) -> None:
    policy = policy_for(tmp_path)
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(f"""
[[pool]]
name = "laptop"
labels = ["self-hosted", "Linux", "X64", "fedora", "nobara"]
hosts = ["test-host"]

[[cache]]
name = "vosk-small"
pools = ["laptop"]
url = "https://models.example/v.zip"
sha256 = "{SHA}"
unpack = "zip"
dest = "{tmp_path / 'cache/vosk-models/small'}"
""")
    client: FlaskClient = create_app(settings.with_overrides(policy_path=policy_file)).test_client()
    rows = client.get("/api/caches", headers=admin_headers()).get_json()["caches"]
    assert [(r["name"], r["host"], r["state"]) for r in rows] == [("vosk-small", "test-host", "missing")]
    for n in range(3):
        body = dumps(job_payload("queued", id=100 + n, labels=["self-hosted", "Linux"]))
        answer = client.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job"))
        assert answer.get_json()["queued"] == ["timings", "prewarm"]
    drain(policy=policy)
    token = host_tokens.add(redis_client, "test-host", now=time.time())
    items = client.get("/agent/v1/work?wait=0", headers={"Authorization": f"Bearer {token}",
                                                         "X-Runnerguard-Host": "test-host"}).get_json()["items"]
    assert sorted(i["job_id"] for i in items) == [100, 101, 102]  # the agent's lock makes it one download
    assert client.get("/api/caches?host=../x", headers=admin_headers()).status_code == 400
    assert client.get("/api/caches").status_code == 401


def test_a_repo_name_that_could_be_a_path_never_selects_repo_scoped_specs(tmp_path: Path) -> None:
    policy = policy_for(tmp_path, repos=["octo/app"])
    hostile = job_payload("queued", labels=["self-hosted"])
    hostile["repository"] = {"id": 1, "full_name": "../../etc/passwd"}
    assert prewarm_queues_of(hostile, policy) == []
    friendly = job_payload("queued", labels=["self-hosted"])
    friendly["repository"] = {"id": 1, "full_name": "Octo/App"}
    assert prewarm_queues_of(friendly, policy) == ["events"]
