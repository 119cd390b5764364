"""`make demo`: runnerguard with the GitHub simulator standing in for github.com, playing a week of the seed's laptop.

It starts an embedded redis-server, the simulator, runnerguard's web service (gunicorn) and a worker; then it plays
seven days of a laptop pool `[self-hosted, Linux, X64, fedora, nobara]` with one runner serving five workflows —
healthy at first, failing from the sixth day — as signed webhooks sent by the simulator. The failure rate crosses 50%
and runnerguard opens a rollback PR in the simulator. It prints the dashboard URL, the admin token, and the PR's page
and unified diff in the simulator (which stands in for github.com's pages too), and runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devtools import supervise
from devtools.github_simulator import SimulatorServer
from devtools.redis_server import free_port, start_redis

ROOT = Path(__file__).resolve().parents[1]
APP_ID = 271828
REPO = "Coldaine/ColdVox"
LABELS = ["self-hosted", "Linux", "X64", "fedora", "nobara"]
WORKFLOWS = {
    "ci.yml": ("CI", ["build", "test", "clippy", "fmt", "docs", "audit", "coverage", "bench"]),
    "release.yml": ("Release", ["package", "publish"]),
    "runner-test.yml": ("Runner test", ["smoke"]),
    "vosk-integration.yml": ("Vosk integration", ["vosk-tests"]),
    "runner-diagnostic.yml": ("Runner diagnostic", ["diagnose"]),
}
POLICY = """\
[[pool]]
name = "laptop"
labels = ["self-hosted", "Linux", "X64", "fedora", "nobara"]
hosts = ["laptop-extra"]
fallback = "ubuntu-latest"

[rollback.failure_rate]
window = "24h"
threshold = 0.5
min_jobs = 6
"""
DAY = 86400


def workflow_file(title: str, jobs: list[str]) -> str:
    lines = [f"name: {title}", "on: [push, pull_request]", "jobs:"]
    for job in jobs:
        lines += [f"  {job}:", "    runs-on: [self-hosted, Linux, X64, fedora, nobara]", "    timeout-minutes: 90",
                  "    steps:", "      - uses: actions/checkout@v4", f"      - run: cargo {job.split('-')[0]}"]
    lines += ["  lint-docs:", "    runs-on: ubuntu-latest", "    steps:", "      - run: markdownlint ."]
    return "\n".join(lines) + "\n"


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def week(now: float, rng: random.Random, *, web: str = "https://github.com") -> list[tuple[float, dict[str, Any]]]:
    """(when, workflow_job payload) for a week of one laptop runner: healthy for five days, failing on days 6 and 7.

    Pushes come in waking hours; every job of a run is queued at once and the one runner takes them in turn, so
    never more than one runs at a time and the rest wait (their queue time is the wait for the runner). Only what
    has happened by `now` is sent: the job on the runner at the end is in progress, the ones behind it queued.
    """
    events: list[tuple[float, dict[str, Any]]] = []
    job_id = 90_000_000
    free_at = now - 7 * DAY  # when the runner is next free
    flows = list(WORKFLOWS.values())
    for day in range(7):
        failing = day >= 5
        day_start = now - (7 - day) * DAY
        pushes = sorted(rng.uniform(8 * 3600, 23 * 3600) for _ in range(rng.randint(5, 8)))
        for pushed in pushes:
            created = day_start + pushed
            if created >= now:
                continue
            workflow, names = flows[0] if rng.random() < 0.6 else rng.choice(flows[1:])
            run_id = job_id // 10 + rng.randint(1, 9)
            for name in names[:5]:
                job_id += 1
                started = max(created, free_at) + rng.uniform(3, 20)  # the runner's pick-up delay
                runtime = rng.uniform(500, 1500) if failing else rng.uniform(240, 1300)
                completed = started + runtime
                free_at = completed
                conclusion = "failure" if rng.random() < (0.7 if failing else 0.06) else "success"
                base = {"id": job_id, "run_id": run_id, "run_attempt": 1, "workflow_name": workflow,
                        "name": name, "head_branch": "main", "labels": LABELS, "created_at": iso(created),
                        "html_url": f"{web}/{REPO}/actions/runs/{run_id}/job/{job_id}",
                        "runner_group_name": "Default"}
                runner = {"runner_name": "laptop-extra", "runner_id": 22}
                events.append((created, {"action": "queued", "workflow_job": {
                    **base, "status": "queued", "started_at": iso(created), "runner_name": None, "runner_id": None}}))
                if started < now:
                    events.append((started, {"action": "in_progress", "workflow_job": {
                        **base, **runner, "status": "in_progress", "started_at": iso(started)}}))
                if completed < now:
                    events.append((completed, {"action": "completed", "workflow_job": {
                        **base, **runner, "status": "completed", "started_at": iso(started),
                        "completed_at": iso(completed), "conclusion": conclusion}}))
    return sorted(events, key=lambda e: e[0])


def links(sim_url: str, number: int) -> tuple[str, str]:
    """The rollback PR's page and its unified diff, in the simulator (its stand-ins for GitHub's pages)."""
    page = f"{sim_url}/{REPO}/pull/{number}"
    return page, page + ".diff"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--check", action="store_true", help="exit once the rollback PR exists (for tests)")
    args = parser.parse_args(argv)
    # SIGTERM ends the demo the way Ctrl-C does (through the cleanup below), not at once with everything left running.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the simulator's request log would drown the story
    workdir = Path(tempfile.mkdtemp(prefix="runnerguard-demo-"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (workdir / "app.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    os.chmod(workdir / "app.pem", 0o600)
    (workdir / "policy.toml").write_text(POLICY)
    secret, admin = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    # Its own session: the terminal's Ctrl-C must not stop Redis before the processes that use it.
    redis_server = start_redis(data_dir=workdir / "redis", own_session=True)
    sim = SimulatorServer(app_id=APP_ID, app_public_key_pem=key.public_key(), own_web_url=True)
    files = {f".github/workflows/{name}": workflow_file(title, jobs) for name, (title, jobs) in WORKFLOWS.items()}
    sim.add_repo(REPO, {**files, "README.md": "# ColdVox\n"})
    installation = sim.install([REPO])
    port = args.port or free_port()
    env = {**os.environ, "GITHUB_WEBHOOK_SECRET": secret, "ADMIN_TOKEN": admin, "REDIS_URL": redis_server.url,
           "GITHUB_APP_ID": str(APP_ID), "GITHUB_PRIVATE_KEY_PATH": str(workdir / "app.pem"),
           "GITHUB_API_URL": sim.url, "RUNNERGUARD_POLICY": str(workdir / "policy.toml"),
           "RUNNERGUARD_LOG_LEVEL": "WARNING", "RUNNERGUARD_SECRET_KEY": secrets.token_urlsafe(32),
           "PYTHONPATH": str(ROOT)}
    bin_dir = Path(sys.executable).parent
    procs = [
        supervise.spawn([str(bin_dir / "gunicorn"), "app:create_app()", "--bind", f"127.0.0.1:{port}",
                         "--workers", "2", "--log-level", "warning", "--no-control-socket"], cwd=ROOT, env=env),
        supervise.spawn([sys.executable, "worker.py"], cwd=ROOT, env=env),
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                if requests.get(f"{url}/readyz", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if time.time() > deadline:
                raise SystemExit("runnerguard did not start")
            time.sleep(0.2)
        sim.configure_webhook(f"{url}/webhooks/github", secret)
        print(f"runnerguard demo: playing a week of {REPO} on the laptop pool ...", flush=True)
        repository = {"id": 1001, "full_name": REPO, "name": "ColdVox", "owner": {"login": "Coldaine"}}
        for _when, payload in week(time.time(), random.Random(3), web=sim.url):
            payload |= {"repository": repository, "installation": {"id": installation}}
            sim.send_webhook(f"{url}/webhooks/github", "workflow_job", payload, secret)
        deadline = time.time() + 90
        while not sim.pulls(REPO) and time.time() < deadline:
            time.sleep(0.2)
        pulls = sim.pulls(REPO)
        print(f"\nrunnerguard demo is up: dashboard {url}/  (admin token: {admin})")
        print(f"  webhook {url}/webhooks/github   GitHub simulator {sim.url}")
        if pulls:
            page, diff = links(sim.url, pulls[0].number)
            print(f"  rollback PR #{pulls[0].number}: {pulls[0].title}")
            print(f"    {page}")
            print(f"  its diff: {diff}")
        else:
            print("  no rollback PR yet (see the worker's log)")
        if args.check:
            return 0 if pulls else 1
        print("Ctrl-C to stop.", flush=True)
        while True:
            time.sleep(3600)  # SIGINT and SIGTERM raise KeyboardInterrupt here
    except KeyboardInterrupt:
        print("runnerguard demo: stopping ...", flush=True)
        return 0
    finally:
        # The web service and the worker first, then what they talk to; children in sessions of their own are
        # stopped by process group, and whatever they started by pid.
        supervise.stop(*procs, grace=6.0)
        sim.stop()
        supervise.stop(redis_server.process, grace=2.0)
        redis_server.stop()


if __name__ == "__main__":
    sys.exit(main())
