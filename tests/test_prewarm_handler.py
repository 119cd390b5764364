"""A queued workflow_job, through the intake, to the runner host's prewarm queue and a warm cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from config import parse_policy
from runnerguard.queue.dispatch import job_event
from runnerguard.queue.routing import prewarm_queues as queues_for_event
from tests.helpers import admin_headers, dumps, signed_headers
from tests.test_prewarm_server import LoopbackServer, make_zip, sha256_file
from tests.test_timeline import job_payload


def prewarm_queues_of(payload, policy):  # type: ignore[no-untyped-def]
    """The routing of a payload as the intake routes it: typed at the edge, then the queue chooser."""
    return queues_for_event(job_event("workflow_job", payload), policy)


def policy_for(tmp_path: Path, url: str, sha: str) -> Any:
    return parse_policy({
        "pool": [{"name": "laptop", "labels": ["self-hosted", "Linux", "X64", "fedora", "nobara"],
                  "hosts": ["test-host"]},
                 {"name": "gpu", "labels": ["self-hosted", "gpu"], "hosts": ["gpu-box"]}],
        "cache": [{"name": "vosk-small", "pools": ["laptop"], "url": url, "sha256": sha, "unpack": "zip",
                   "dest": str(tmp_path / "cache/vosk-models/small")}],
    })


@pytest.fixture()
def model(tmp_path: Path) -> Any:
    with LoopbackServer() as server:
        archive = make_zip(tmp_path / "model.zip", {"vosk-model-small-en-us-0.15/am/final.mdl": os.urandom(50_000)})
        url = server.add(archive)
        yield server, url, sha256_file(archive)


def test_queued_job_is_routed_to_the_hosts_that_serve_its_pool(tmp_path: Path, model: Any) -> None:
    _server, url, sha = model
    policy = policy_for(tmp_path, url, sha)
    laptop_job = job_payload("queued", labels=["self-hosted", "linux"])
    assert prewarm_queues_of(laptop_job, policy) == ["prewarm.test-host"]
    gpu_job = job_payload("queued", labels=["self-hosted", "gpu"])
    assert prewarm_queues_of(gpu_job, policy) == []  # its host has nothing to warm: it gets nothing
    assert prewarm_queues_of(job_payload("queued", labels=["ubuntu-latest"]), policy) == []
    assert prewarm_queues_of({"workflow_job": {"labels": "self-hosted"}}, policy) == []


def test_queued_delivery_warms_the_cache_on_the_host(settings, redis_client, drain, tmp_path: Path, model: Any) -> None:  # type: ignore[no-untyped-def]

    server, url, sha = model
    policy = policy_for(tmp_path, url, sha)
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(f"""
[[pool]]
name = "laptop"
labels = ["self-hosted", "Linux", "X64", "fedora", "nobara"]
hosts = ["test-host"]

[[cache]]
name = "vosk-small"
pools = ["laptop"]
url = "{url}"
sha256 = "{sha}"
unpack = "zip"
dest = "{tmp_path / 'cache/vosk-models/small'}"
""")
    client = create_app(settings.with_overrides(policy_path=policy_file)).test_client()
    rows = client.get("/api/caches", headers=admin_headers()).get_json()["caches"]
    assert [(r["name"], r["host"], r["state"]) for r in rows] == [("vosk-small", "test-host", "missing")]
    for n in range(3):
        body = dumps(job_payload("queued", id=100 + n, labels=["self-hosted", "Linux"]))
        answer = client.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job"))
        assert answer.get_json()["queued"] == ["timings", "prewarm@prewarm.test-host"]
    drain(queues=("prewarm.test-host",), policy=policy)
    assert (tmp_path / "cache/vosk-models/small/vosk-model-small-en-us-0.15/am/final.mdl").stat().st_size == 50_000
    assert len(server.gets()) == 1  # three queued jobs, one download
    row = client.get("/api/caches?host=test-host", headers=admin_headers()).get_json()["caches"][0]
    assert row["state"] == "installed" and row["misses"] == 1 and row["hits"] == 2
    assert row["hit_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert client.get("/api/caches?host=../x", headers=admin_headers()).status_code == 400
    assert client.get("/api/caches").status_code == 401


def test_a_repo_name_that_could_be_a_path_never_selects_repo_scoped_specs(tmp_path: Path, model: Any) -> None:
    _server, url, sha = model
    policy = parse_policy({
        "pool": [{"name": "laptop", "labels": ["self-hosted"], "hosts": ["test-host"]}],
        "cache": [{"name": "only-app", "pools": ["laptop"], "repos": ["octo/app"], "url": url, "sha256": sha,
                   "unpack": "zip", "dest": str(tmp_path / "c/app")}],
    })
    hostile = job_payload("queued", labels=["self-hosted"])
    hostile["repository"] = {"id": 1, "full_name": "../../etc/passwd"}
    assert prewarm_queues_of(hostile, policy) == []
    friendly = job_payload("queued", labels=["self-hosted"])
    friendly["repository"] = {"id": 1, "full_name": "Octo/App"}
    assert prewarm_queues_of(friendly, policy) == ["prewarm.test-host"]
