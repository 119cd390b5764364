"""worker.py as the Procfile runs it: a real process, a real Redis; it works, and it stops when asked to."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq import Worker, cron_scheduler_registry

from devtools.reliability_stack import wait_for
from runnerguard.queue.worker import survive_outages
from runnerguard.store import deliveries
from tests.helpers import SECRET, dumps, signed_headers
from tests.test_timeline import job_payload

ROOT = Path(__file__).resolve().parents[1]


def _env(redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNERGUARD_", "REDIS_"))}
    return {**env, "GITHUB_WEBHOOK_SECRET": SECRET, "REDIS_URL": redis_url, "RUNNERGUARD_HOST": "test-host",
            "RUNNERGUARD_LOG_LEVEL": "WARNING"}


@pytest.fixture()
def start(redis_url: str) -> Iterator:  # type: ignore[type-arg]
    started: list[subprocess.Popen[str]] = []

    def _start(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen([sys.executable, "worker.py", *args], cwd=ROOT, env=_env(redis_url),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)  # its own group: RQ's scheduler child dies with it
        started.append(process)
        return process

    yield _start
    for process in started:
        _kill_group(process)


def _kill_group(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _waiting_for_work(client: redis.Redis) -> bool:
    # RQ registers the worker before it installs its signal handlers; it marks itself idle only once it waits.
    workers = Worker.all(connection=client)
    return len(workers) == 1 and workers[0].get_state() == "idle"


def _stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    process.send_signal(sig)
    try:
        output, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        output, _ = process.communicate()
        raise AssertionError(f"worker.py did not stop within 15 s of signal {sig}:\n{output[-3000:]}") from None
    return process.returncode, output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_idle_worker_stops_when_asked(start, redis_client: redis.Redis, sig: int) -> None:  # type: ignore[no-untyped-def]
    # An idle worker waits on the queue; a stop request there must end the process, not be taken for a lost Redis
    # (honcho and systemd both stop the stack with SIGTERM / SIGINT and wait).
    process = start("events")
    wait_for(lambda: _waiting_for_work(redis_client), timeout=20, what="worker idle")
    code, output = _stop(process, sig)
    assert code == 0, output
    assert "lost Redis" not in output
    wait_for(lambda: Worker.count(connection=redis_client) == 0, timeout=5, what="worker deregistered")


def test_a_worker_records_a_delivery_then_stops(start, client, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    process = start("events")
    wait_for(lambda: _waiting_for_work(redis_client), timeout=20, what="worker idle")
    body = dumps(job_payload("queued", id=7, run_id=70))
    response = client.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job", guid="w-1"))
    assert response.status_code == 202, response.get_json()

    def recorded() -> bool:
        delivery = deliveries.load(redis_client, "w-1")
        return delivery is not None and delivery.state == "done"

    wait_for(recorded, timeout=20, what="delivery recorded")
    # Between jobs the worker does not announce "idle"; once its queues are empty it does.
    wait_for(lambda: _waiting_for_work(redis_client), timeout=20, what="worker idle")
    code, output = _stop(process)
    assert code == 0, output


def test_the_scheduler_stops_when_asked(start, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]

    process = start("--scheduler")
    # RQ's cron scheduler installs its signal handlers before it registers itself.
    wait_for(lambda: bool(cron_scheduler_registry.get_keys(redis_client)), timeout=20, what="scheduler registered")
    code, output = _stop(process)
    assert code == 0, output
    assert "lost Redis" not in output
    wait_for(lambda: not cron_scheduler_registry.get_keys(redis_client), timeout=5, what="scheduler deregistered")


def test_prewarm_is_the_host_agent_and_never_an_rq_worker(start, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    # the central tier's environment (REDIS_URL, the webhook secret) does not make --prewarm a Redis client: it is the
    # runner host's agent, which wants RUNNERGUARD_URL and says so (tests/test_agent_e2e.py runs it for real)
    process = start("--prewarm")
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 2 and "RUNNERGUARD_URL" in output, output
    assert Worker.all(connection=redis_client) == []
    assert [name for name in (c.get("name") for c in redis_client.client_list()) if name] == []


def test_a_notifiers_missing_secret_stops_the_worker_but_not_the_runner_hosts(  # type: ignore[no-untyped-def]
        redis_url: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[[notify]]\nkind = "slack"\nurl_env = "RG_TEST_SLACK_URL"\n')
    env = {**_env(redis_url), "RUNNERGUARD_POLICY": str(policy)}
    env.pop("RG_TEST_SLACK_URL", None)
    central = subprocess.run([sys.executable, "worker.py", "--burst"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=60, check=False)
    assert central.returncode == 2 and "RG_TEST_SLACK_URL: is required by the slack-0 notifier" in central.stderr
    # the runner host's agent, with that policy as its local copy: it starts (its first line says where jobs ask)
    agent_env = {"PATH": os.environ["PATH"], "RUNNERGUARD_URL": "http://127.0.0.1:9", "RUNNERGUARD_HOST": "test-host",
                 "RUNNERGUARD_HOST_TOKEN": "t", "RUNNERGUARD_AGENT_LISTEN": "127.0.0.1:0",
                 "RUNNERGUARD_AGENT_STATE": str(tmp_path / "state"), "RUNNERGUARD_POLICY": str(policy)}
    runner_host = subprocess.Popen([sys.executable, "worker.py", "--prewarm"], cwd=ROOT, env=agent_env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert runner_host.stdout is not None
    first = runner_host.stdout.readline()
    runner_host.send_signal(signal.SIGTERM)
    rest, _ = runner_host.communicate(timeout=30)
    assert "jobs ask at" in first and runner_host.returncode == 0, first + rest


def test_a_read_timeout_is_an_outage_to_wait_out_not_an_exit(redis_client: redis.Redis) -> None:
    """A primary whose host vanished answers reads with redis-py's TimeoutError (not a ConnectionError): the
    scheduler let it through and exited, on every host. It is waited out like any lost connection."""
    runs: list[int] = []

    def run() -> bool:
        runs.append(1)
        if len(runs) == 1:
            raise redis.TimeoutError("Timeout reading from socket")
        return True  # asked to stop

    assert survive_outages(redis_client, run) == 0
    assert len(runs) == 2
