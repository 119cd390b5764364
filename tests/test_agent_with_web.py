"""The agent against the real web tier (agentsrv's /agent/v1 on create_app, a real Redis), all over loopback HTTP.

Skipped until the server side of issue #13 is in this tree (it lands from another branch).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from werkzeug.serving import make_server

from app import create_app
from config import Settings
from devtools.redis_server import free_port
from runnerguard.queue.deps import Deps
from runnerguard.queue.worker import build_worker
from tests.helpers import admin_headers, dumps, signed_headers
from tests.test_agent_runner_log import STARTUP, write_log
from tests.test_prewarm_server import LoopbackServer, sha256_file
from tests.test_timeline import job_payload

hosts = pytest.importorskip("runnerguard.services.hosts", reason="the web tier's agent API is not in this tree yet")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def stack(tmp_path: Path, settings: Settings, redis_client: redis.Redis) -> Iterator[dict[str, object]]:
    runner = tmp_path / "actions-runner"
    write_log(runner, STARTUP)
    (tmp_path / "mirror").mkdir()
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("vosk/final.mdl", os.urandom(200_000))
    with LoopbackServer() as origin:
        policy = tmp_path / "policy.toml"
        policy.write_text(f"""
[[pool]]
name = "laptop"
labels = ["self-hosted", "Linux"]
hosts = ["laptop-extra"]

[[host]]
name = "laptop-extra"
runner_dir = "{runner}"
cleanup_at = 0.99

[[cache]]
name = "vosk-small"
pools = ["laptop"]
url = "{origin.add(archive)}"
sha256 = "{sha256_file(archive)}"
unpack = "zip"
dest = "{tmp_path}/cache/vosk/small"

[[command]]
name = "fetch-mirror"
argv = ["{sys.executable}", "-c", "print('fetched')"]
cwd = "{tmp_path}/mirror"
timeout_seconds = 30
pools = ["laptop"]
""")
        web_settings = settings.with_overrides(policy_path=policy)
        http = make_server("127.0.0.1", 0, create_app(web_settings), threaded=True)
        threading.Thread(target=http.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{http.server_port}"
        token = hosts.add(redis_client, "laptop-extra", now=time.time()).token
        port = free_port()
        env = {"PATH": os.environ["PATH"], "RUNNERGUARD_URL": base, "RUNNERGUARD_HOST": "laptop-extra",
               "RUNNERGUARD_HOST_TOKEN": token, "RUNNERGUARD_AGENT_LISTEN": f"127.0.0.1:{port}",
               "RUNNERGUARD_AGENT_STATE": str(tmp_path / "state")}
        agent = subprocess.Popen([sys.executable, "worker.py", "--prewarm"], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            yield {"base": base, "agent_url": f"http://127.0.0.1:{port}", "origin": origin, "env": env,
                   "settings": web_settings, "dest": tmp_path / "cache" / "vosk" / "small"}
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.communicate(timeout=30)
            http.shutdown()


def _until(what, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (got := what()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return got


def test_a_queued_job_is_prewarmed_reported_and_answered_through_the_public_interfaces(
        stack: dict[str, object], redis_client: redis.Redis) -> None:
    base, settings = str(stack["base"]), stack["settings"]
    assert isinstance(settings, Settings)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = dumps(job_payload("queued", id=4242, labels=["self-hosted", "Linux"], created_at=now, started_at=None))
    assert requests.post(f"{base}/webhooks/github", data=body, headers=signed_headers(body, "workflow_job"),
                         timeout=10).status_code == 202
    build_worker(redis_client, ["events"], Deps.from_settings(settings, client=redis_client)).work(
        burst=True, logging_level="WARNING")

    def cache_row() -> dict[str, object] | None:
        rows = requests.get(f"{base}/api/caches", headers=admin_headers(), timeout=10).json()["caches"]
        return next((r for r in rows if r["name"] == "vosk-small" and r["misses"]), None)

    row = _until(cache_row)
    assert row["state"] == "installed"
    job = requests.get(f"{stack['agent_url']}/caches/vosk-small", params={"wait": "30"}, timeout=40).json()
    assert (job["state"], job["path"]) == ("ready", str(stack["dest"]))
    origin = stack["origin"]
    assert isinstance(origin, LoopbackServer) and len(origin.gets()) == 1

    def host_row() -> dict[str, object] | None:
        rows = requests.get(f"{base}/api/hosts", headers=admin_headers(), timeout=10).json()["hosts"]
        return next((h for h in rows if h["name"] == "laptop-extra" and h["state"] == "up"
                     and h["runner"] == "listening"), None)

    host = _until(host_row, timeout=45)
    assert host["agent_version"] and host["disk"]


def test_a_forged_token_gets_nothing_and_the_agent_says_so(stack: dict[str, object]) -> None:
    env = {**stack["env"], "RUNNERGUARD_HOST_TOKEN": "forged", "RUNNERGUARD_AGENT_LISTEN": "127.0.0.1:0"}  # type: ignore[dict-item]
    forged = subprocess.Popen([sys.executable, "worker.py", "--prewarm"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(forged.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    # Until the agent says it (a loaded machine takes seconds to start an interpreter), not a fixed sleep.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any("refused this host's token" in line for line in lines):
        time.sleep(0.1)
    forged.send_signal(signal.SIGTERM)
    forged.wait(timeout=30)
    reader.join(timeout=10)
    output = "".join(lines)
    assert "refused this host's token (401)" in output and "Traceback" not in output
