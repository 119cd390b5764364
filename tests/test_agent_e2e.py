"""The agent end to end against a loopback web tier speaking interfaces.md section 2, and as `worker.py --prewarm`."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from config import load_agent_settings, parse_policy
from runnerguard.agent import AGENT_VERSION, service
from runnerguard.agent.service import Agent
from tests.agent_server import AgentWebTier, web_tier
from tests.test_agent_hygiene import age, put
from tests.test_agent_runner_log import RUNNING, STARTUP, write_log
from tests.test_prewarm_server import LoopbackServer, sha256_file

ROOT = Path(__file__).resolve().parents[1]
HOST, TOKEN = "laptop-extra", "rg-host-token-laptop"


@pytest.fixture()
def origin() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture()
def tier() -> Iterator[AgentWebTier]:
    with web_tier() as t:
        yield t


def host_config(tmp_path: Path, origin: LoopbackServer) -> dict[str, Any]:
    blob = tmp_path / "vosk-model-small.bin"
    blob.write_bytes(os.urandom(300_000))
    (tmp_path / "mirror").mkdir(exist_ok=True)
    return {
        "host": {"name": HOST, "runner_dir": str(tmp_path / "actions-runner"), "cleanup_at": 0.8, "keep_days": 7,
                 "dry_run": False, "service": None},
        "caches": [{"name": "vosk-small", "url": origin.add(blob), "sha256": sha256_file(blob), "unpack": "none",
                    "dest": str(tmp_path / "cache" / "vosk-models" / "small"), "pools": ["laptop"]}],
        "commands": [{"name": "fetch-mirror", "argv": [sys.executable, "-c", "print('fetched')"],
                      "cwd": str(tmp_path / "mirror"), "timeout_seconds": 30, "pools": ["laptop"]}],
        "report_every": 5,
        "server_version": "0.1.0",
    }


def agent_for(tier: AgentWebTier, tmp_path: Path, *, host: str = HOST, token: str = TOKEN, **kw: Any) -> Agent:
    settings = load_agent_settings({"RUNNERGUARD_URL": tier.url, "RUNNERGUARD_HOST": host,
                                    "RUNNERGUARD_HOST_TOKEN": token, "RUNNERGUARD_AGENT_LISTEN": "127.0.0.1:0",
                                    "RUNNERGUARD_AGENT_STATE": str(tmp_path / "state")})
    return Agent(settings, **kw)


@pytest.fixture()
def running(tier: AgentWebTier, tmp_path: Path, origin: LoopbackServer) -> Iterator[Agent]:
    tier.add_host(HOST, TOKEN, host_config(tmp_path, origin))
    write_log(tmp_path / "actions-runner", STARTUP)
    agent = agent_for(tier, tmp_path).start()
    yield agent
    agent.shutdown()


def test_work_is_long_polled_run_by_name_and_acknowledged(running: Agent, tier: AgentWebTier,
                                                          origin: LoopbackServer) -> None:
    host = tier.hosts[HOST]
    tier.wait_for(lambda: running.configured)  # then it long-polls: the items below answer that poll at once
    tier.enqueue(HOST, {"id": "w1", "kind": "cache", "name": "vosk-small", "job_id": 101})
    tier.enqueue(HOST, {"id": "w2", "kind": "command", "name": "fetch-mirror", "job_id": 101})
    tier.enqueue(HOST, {"id": "w3", "kind": "cache", "name": "not-in-policy", "job_id": 102})
    tier.enqueue(HOST, {"id": "w4", "kind": "command", "name": "rm -rf /", "job_id": 102})
    tier.enqueue(HOST, {"id": "w5", "kind": "cache", "name": "vosk-small", "job_id": 103})

    tier.wait_for(lambda: len(host.done) == 5)

    assert host.done["w1"]["state"] == "installed" and host.done["w1"]["bytes"] == 300_000
    assert host.done["w2"] == {"state": "ran", "bytes": 0, "seconds": host.done["w2"]["seconds"], "error": None}
    for item in ("w3", "w4"):
        assert host.done[item] == {"state": "error", "bytes": 0, "seconds": 0.0, "error": "not in this host's policy"}
    assert host.done["w5"]["state"] == "hit"
    assert len(origin.gets()) == 1
    assert set(tier.statuses("/agent/v1/config")) == {200}


def test_reports_carry_health_runner_state_and_the_jobs_cache_answers(running: Agent, tier: AgentWebTier,
                                                                      tmp_path: Path) -> None:
    host = tier.hosts[HOST]
    tier.wait_for(lambda: running.configured)
    answer = requests.get(f"{running.cache_server.url}/caches/vosk-small", params={"wait": "30"}, timeout=60)
    assert answer.status_code == 200
    assert requests.get(f"{running.cache_server.url}/caches/vosk-small", timeout=5).status_code == 200
    write_log(tmp_path / "actions-runner", STARTUP + RUNNING)

    running.report_once()

    report = host.reports[-1]
    assert report["agent_version"] == AGENT_VERSION and len(report["load"]) == 3 and report["uptime"] > 0
    assert report["memory"]["total"] > 0
    assert set(report["disk"]) == {str(tmp_path / "actions-runner" / "_work"), str(tmp_path / "cache" / "vosk-models")}
    assert set(next(iter(report["disk"].values()))) == {"total", "used", "free"}
    assert report["runner"] == {"state": "busy", "detail": "running a job", "job": {"name": "build (fedora, nobara)"},
                                "service": None}
    assert report["cache_answers"] == {"vosk-small": {"hit": 1, "waited": 1}}
    running.report_once()
    assert host.reports[-1]["cache_answers"] == {}  # counts since the last report


def test_a_report_that_fails_keeps_its_counts_for_the_next(tier: AgentWebTier, tmp_path: Path,
                                                            origin: LoopbackServer) -> None:
    tier.add_host(HOST, TOKEN, host_config(tmp_path, origin))
    agent = agent_for(tier, tmp_path)
    agent.refresh_config()
    agent.broker._count("vosk-small", "hit")
    tier.hosts[HOST].revoked = True
    with pytest.raises(service.Refused):
        agent.report_once()
    tier.hosts[HOST].revoked = False
    agent.report_once()
    assert tier.hosts[HOST].reports[-1]["cache_answers"] == {"vosk-small": {"hit": 1, "waited": 0}}


def test_cleanups_go_in_the_next_report_and_only_while_idle(tier: AgentWebTier, tmp_path: Path,
                                                            origin: LoopbackServer) -> None:
    config = host_config(tmp_path, origin)
    tier.add_host(HOST, TOKEN, config)
    runner = tmp_path / "actions-runner"
    put(runner / "_work" / "_temp" / "old" / "blob")
    age(runner / "_work" / "_temp", 30)
    write_log(runner, STARTUP + RUNNING)
    full = lambda _p: (1_000_000, 950_000, 50_000)  # noqa: E731 - the work directory's filesystem at 95%
    agent = agent_for(tier, tmp_path, disk_usage=full)
    agent.refresh_config()

    agent.report_once()
    assert tier.hosts[HOST].reports[-1]["cleanups"] == []  # a job runs: nothing is touched
    assert (runner / "_work" / "_temp" / "old").exists()

    write_log(runner, STARTUP)
    agent.report_once()
    [cleanup] = tier.hosts[HOST].reports[-1]["cleanups"]
    assert cleanup["removed"] == [str(runner / "_work" / "_temp" / "old")] and cleanup["dry_run"] is False
    assert cleanup["freed_bytes"] >= 8192 and not (runner / "_work" / "_temp" / "old").exists()
    agent.report_once()
    assert tier.hosts[HOST].reports[-1]["cleanups"] == []


def test_a_local_policy_wins_and_work_it_lacks_is_refused(tier: AgentWebTier, tmp_path: Path,
                                                          origin: LoopbackServer) -> None:
    tier.add_host(HOST, TOKEN, host_config(tmp_path, origin))
    local = parse_policy({"pool": [{"name": "laptop", "labels": ["self-hosted"], "hosts": [HOST]}]})
    agent = agent_for(tier, tmp_path, local_policy=local)
    tier.enqueue(HOST, {"id": "w1", "kind": "cache", "name": "vosk-small", "job_id": 1})
    agent.work_once(wait=0)
    assert agent.wait_idle()
    assert tier.hosts[HOST].done["w1"]["error"] == "not in this host's policy"
    assert agent.policy.source == "local" and agent.policy.host is not None  # the server's [[host]] as fallback
    assert agent.cache_server.answer("/caches/vosk-small")[0] == 404


@pytest.mark.parametrize(("host", "token", "status", "says"), [
    (HOST, "wrong-token", 401, "wrong or revoked"),
    ("other-host", TOKEN, 403, "belongs to another host"),
])
def test_a_refused_token_is_one_line_then_retried_with_backoff(tier: AgentWebTier, tmp_path: Path,
                                                               origin: LoopbackServer, caplog: pytest.LogCaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch, host: str, token: str,
                                                               status: int, says: str) -> None:
    monkeypatch.setattr(service, "BACKOFF_START", 0.1)
    tier.add_host(HOST, TOKEN, host_config(tmp_path, origin))
    tier.add_host("other-host", "rg-other-token", host_config(tmp_path, origin))
    agent = agent_for(tier, tmp_path, host=host, token=token)
    with caplog.at_level(logging.WARNING, logger="runnerguard.agent"):
        agent.start()
        tier.wait_for(lambda: len(tier.statuses("/agent/v1/config")) >= 3)
        agent.shutdown()
    assert set(tier.statuses("/agent/v1/config")) == {status}
    lines = [r for r in caplog.records if r.name == "runnerguard.agent"]
    assert len(lines) >= 3 and all(says in r.getMessage() and r.exc_info is None for r in lines)
    assert all("\n" not in r.getMessage() and token not in r.getMessage() for r in lines)
    assert tier.hosts[HOST].done == {} and tier.hosts[HOST].reports == []


def test_no_token_is_said_in_one_line_and_nothing_is_sent(tier: AgentWebTier, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "BACKOFF_START", 0.05)
    agent = agent_for(tier, tmp_path, token="")
    with caplog.at_level(logging.WARNING, logger="runnerguard.agent"):
        agent.start()
        time.sleep(0.5)
        agent.shutdown()
    assert tier.calls == []
    lines = [r.getMessage() for r in caplog.records if r.name == "runnerguard.agent"]
    assert lines and all("no RUNNERGUARD_HOST_TOKEN set" in line for line in lines)


def test_a_malformed_config_or_work_answer_is_refused_not_obeyed(tier: AgentWebTier, tmp_path: Path,
                                                                 origin: LoopbackServer) -> None:
    config = host_config(tmp_path, origin)
    config["commands"][0]["argv"] = "rm -rf /"  # a shell string: the spec parser refuses it
    tier.add_host(HOST, TOKEN, config)
    agent = agent_for(tier, tmp_path)
    with pytest.raises(service.Unreachable, match="argv"):
        agent.refresh_config()
    config["commands"][0]["argv"] = [sys.executable, "-c", "print(1)"]
    config["host"]["name"] = "someone-else"
    with pytest.raises(service.Unreachable, match=r"host\.name"):
        agent.refresh_config()
    config["host"]["name"] = HOST
    agent.refresh_config()
    tier.enqueue(HOST, {"id": "../../etc", "kind": "cache", "name": "vosk-small", "job_id": 1})
    tier.enqueue(HOST, {"id": "ok-1", "kind": "python", "name": "os.system", "job_id": 1})
    tier.enqueue(HOST, {"id": "ok-2", "kind": "command", "name": "fetch-mirror", "job_id": 2})
    assert agent.work_once(wait=0) == 1
    assert agent.wait_idle()
    assert list(tier.hosts[HOST].done) == ["ok-2"]


def test_a_long_download_does_not_hold_up_a_quick_command(running: Agent, tier: AgentWebTier,
                                                          origin: LoopbackServer) -> None:
    host = tier.hosts[HOST]
    tier.wait_for(lambda: running.configured)
    origin.throttle = 0.1  # ~0.5 s of download
    tier.enqueue(HOST, {"id": "big", "kind": "cache", "name": "vosk-small", "job_id": 1})
    assert origin.body_started.wait(10)
    tier.enqueue(HOST, {"id": "quick", "kind": "command", "name": "fetch-mirror", "job_id": 1})
    tier.wait_for(lambda: len(host.done) == 2)
    assert list(host.done) == ["quick", "big"]
    assert host.done["big"]["state"] == "installed"


def test_a_report_is_trimmed_to_fit_the_web_tiers_body_limit() -> None:
    body: dict[str, Any] = {"disk": {}, "cleanups": [
        {"at": 1.0, "freed_bytes": 1, "removed": [f"/home/c/actions-runner/_work/_temp/{n:0>80}" for n in range(200)],
         "dry_run": False} for _ in range(20)]}
    service.fit(body, 60 << 10)
    assert len(json.dumps(body)) <= 60 << 10 and body["cleanups"] and body["cleanups"][-1]["removed"]


def test_a_full_web_tier_answering_204_at_once_is_not_polled_in_a_tight_loop(tier: AgentWebTier, tmp_path: Path,
                                                                            origin: LoopbackServer) -> None:
    # Full before the agent starts: its very first poll must meet the 204 (a poll already held would hide it).
    tier.full_retry_after = 1
    tier.add_host(HOST, TOKEN, host_config(tmp_path, origin))
    write_log(tmp_path / "actions-runner", STARTUP)
    agent = agent_for(tier, tmp_path).start()
    try:
        tier.wait_for(lambda: tier.statuses("/agent/v1/work"))
        first = len(tier.statuses("/agent/v1/work"))
        time.sleep(2.5)
        polled = len(tier.statuses("/agent/v1/work")) - first
        assert 1 <= polled <= 4  # Retry-After: 1 honoured (2-3 polls in 2.5 s), not hundreds of polls
    finally:
        agent.shutdown()


def test_a_host_without_a_host_table_still_warms_but_reports_no_runner(tier: AgentWebTier, tmp_path: Path,
                                                                        origin: LoopbackServer) -> None:
    config = host_config(tmp_path, origin)
    config["host"] = {"name": HOST, "runner_dir": None, "service": None, "cleanup_at": 0.8, "keep_days": 7,
                      "dry_run": False}  # what the web tier sends for a host only named in a pool's hosts
    tier.add_host(HOST, TOKEN, config)
    agent = agent_for(tier, tmp_path)
    agent.refresh_config()
    assert agent.policy.host is None and set(agent.policy.caches) == {"vosk-small"}
    agent.report_once()
    assert tier.hosts[HOST].reports[-1]["runner"]["state"] == "unknown"


def test_texts_for_the_web_tier_are_printable_and_bounded() -> None:
    assert service.text("line one\nline two\x1b[31m" + "x" * 600, 500) == "line one?line two?[31m" + "x" * 478
    assert service.text(None, 10) is None


# -- worker.py --prewarm, as the systemd unit runs it --------------------------------------------------------


def _agent_env(tier: AgentWebTier, tmp_path: Path, **extra: str) -> dict[str, str]:
    # only what agent.env holds: no REDIS_URL, no webhook secret in the process's environment at all
    return {"PATH": os.environ["PATH"], "RUNNERGUARD_URL": tier.url, "RUNNERGUARD_HOST": HOST,
            "RUNNERGUARD_HOST_TOKEN": TOKEN, "RUNNERGUARD_AGENT_LISTEN": "127.0.0.1:0",
            "RUNNERGUARD_AGENT_STATE": str(tmp_path / "state"), **extra}


def _run(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "worker.py", "--prewarm"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_worker_prewarm_is_the_agent_with_three_settings_and_no_redis(tier: AgentWebTier, tmp_path: Path,
                                                                      origin: LoopbackServer) -> None:
    tier.add_host(HOST, TOKEN, host_config(tmp_path, origin))
    process = _run(_agent_env(tier, tmp_path))
    try:
        tier.enqueue(HOST, {"id": "w1", "kind": "command", "name": "fetch-mirror", "job_id": 7})
        tier.wait_for(lambda: "w1" in tier.hosts[HOST].done and tier.hosts[HOST].reports, timeout=30)
        assert tier.hosts[HOST].done["w1"]["state"] == "ran"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "Traceback" not in output and "redis" not in output.lower()


def test_worker_prewarm_without_a_token_says_so_and_keeps_running(tier: AgentWebTier, tmp_path: Path) -> None:
    process = _run(_agent_env(tier, tmp_path, RUNNERGUARD_HOST_TOKEN=""))
    assert process.stdout is not None
    seen = [process.stdout.readline() for _ in range(3)]  # the start line, then one line per attempt (1 s, 2 s)
    assert process.poll() is None  # still running: it retries, it does not exit for systemd to restart it
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    output = "".join(seen) + rest
    lines = [line for line in output.splitlines() if "RUNNERGUARD_HOST_TOKEN" in line]
    assert 2 <= len(lines) <= 4 and "Traceback" not in output
    assert tier.calls == []


@pytest.mark.parametrize(("extra", "key"), [({"RUNNERGUARD_AGENT_LISTEN": "0.0.0.0:8377"}, "RUNNERGUARD_AGENT_LISTEN"),
                                            ({"RUNNERGUARD_URL": "http://runnerguard.example.org"}, "RUNNERGUARD_URL")])
def test_worker_prewarm_refuses_a_public_listener_or_a_plain_http_url(tier: AgentWebTier, tmp_path: Path,
                                                                      extra: dict[str, str], key: str) -> None:
    process = _run(_agent_env(tier, tmp_path, **extra))
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 2 and key in output and len(output.strip().splitlines()) == 1


def test_the_agent_code_loads_no_redis_rq_store_queue_or_github_client() -> None:
    # import-linter holds the import graph (pyproject.toml); this checks what a fresh interpreter really loads
    code = ("import sys, runnerguard.agent.service; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('redis', 'rq', 'flask') "
            "or m.startswith(('runnerguard.store', 'runnerguard.queue', 'runnerguard.github', 'handlers'))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
