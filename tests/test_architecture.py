"""The architecture's rules that import-linter cannot hold, and the task table's trust line (issue #12, #13)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis
from flask.testing import FlaskClient
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.utils import import_attribute

from runnerguard.queue import tasks
from runnerguard.queue.runner import REFUSED_TOTAL
from runnerguard.store import metrics
from tests.test_timings import deliver, job_events

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runnerguard", "config", "handlers")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_nothing_imports_the_entry_points() -> None:
    offenders = [str(path.relative_to(ROOT)) for package in PACKAGES for path in (ROOT / package).rglob("*.py")
                 if _imports(path) & {"app", "worker"}]
    assert offenders == []


def test_the_web_process_loads_neither_the_github_client_nor_the_task_bodies() -> None:
    """`create_app()` in a fresh interpreter: what a gunicorn worker holds in memory."""
    script = (
        "import json, sys\n"
        "from app import create_app\n"
        "create_app()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('runnerguard', 'config', 'handlers'))))\n"
    )
    env = {**os.environ, "GITHUB_WEBHOOK_SECRET": "s" * 32, "REDIS_URL": "redis://127.0.0.1:1/0",
           "ADMIN_TOKEN": "a" * 40}
    env.pop("RUNNERGUARD_POLICY", None)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert not [m for m in loaded if m == "runnerguard.github" or m.startswith(("runnerguard.github.", "handlers"))]
    assert not [m for m in loaded if m in ("runnerguard.queue.deps", "runnerguard.queue.runner",
                                           "runnerguard.queue.worker", "runnerguard.services.rollback")]
    assert "runnerguard.web.intake" in loaded  # the check can fail: it does see the web's own modules


def test_every_task_in_the_table_names_a_function_of_the_task_bodies() -> None:

    for path, spec in tasks.TASKS.items():
        assert path.startswith("handlers."), path
        assert callable(import_attribute(path)), path  # type: ignore[arg-type]
        assert spec.path == path
    for old, new in tasks.ALIASES.items():
        assert new in tasks.TASKS, old


def _failed_reasons(client: redis.Redis, queue: str) -> dict[str, str]:
    registry = FailedJobRegistry(queue=tasks.queue(queue, client))
    reasons = {}
    for job in Job.fetch_many(registry.get_job_ids(), connection=client, serializer=tasks.SERIALIZER):
        if job is not None:
            result = job.latest_result()
            reasons[job.id] = (result.exc_string or "") if result is not None else ""
    return reasons


def test_a_job_naming_a_function_outside_the_task_table_never_runs(redis_client: redis.Redis, drain,  # type: ignore[no-untyped-def]
                                                                    tmp_path: Path) -> None:
    """What a runner host with Redis access did: push `subprocess.call` onto a queue the workers serve."""
    marker = tmp_path / "pwned"
    for queue in ("github", "events"):
        tasks.queue(queue, redis_client).enqueue("subprocess.call", ["touch", str(marker)], job_id=f"evil-{queue}")
    # a task's module with another function's name, and a method on an instance, are refused as well
    tasks.queue("events", redis_client).enqueue("handlers.timings.os.system", f"touch {marker}", job_id="evil-attr")
    drain()
    assert not marker.exists()
    for queue, ids in (("github", {"evil-github"}), ("events", {"evil-events", "evil-attr"})):
        reasons = _failed_reasons(redis_client, queue)
        assert ids <= reasons.keys()
        assert all("not in runnerguard's task table" in reasons[i] for i in ids)
    assert metrics.value(redis_client, REFUSED_TOTAL, {"reason": "unknown_task"}) == 3
    assert tasks.queue("events", redis_client).count == 0  # not retried either


def test_a_pickled_job_is_never_unpickled(redis_client: redis.Redis, drain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """RQ's default serializer is pickle, which runs code while it loads; the workers read JSON only."""
    marker = tmp_path / "pwned"
    Queue("events", connection=redis_client).enqueue("subprocess.call", ["touch", str(marker)], job_id="pickled")
    drain()
    assert not marker.exists()
    assert "pickled" in FailedJobRegistry(queue=tasks.queue("events", redis_client)).get_job_ids()


def test_jobs_queued_by_every_path_of_the_task_table_still_run(client: FlaskClient, redis_client: redis.Redis,  # type: ignore[no-untyped-def]
                                                               drain) -> None:
    """RQ keeps a task's dotted path in every queued and failed job: each path of the table (and the old argument
    form of open_rollback) must still run after a release, or sit in the failed registry for a reason of its own."""
    now = time.time()
    for i, event in enumerate(job_events(42, "failure", created=now - 600)):
        deliver(client, event, f"old-{i}")
    drain()  # the deliveries' own tasks: timings and the rollback check
    guid = "old-2"
    decision = {"trigger": "manual", "pool": "self-hosted", "fire": True, "reason": "requested", "window_seconds": 0,
                "rate": None}
    calls = {
        "handlers.timings.record_job": (guid,),
        "handlers.rollback.evaluate_after_job": (guid,),
        "handlers.rollback.follow_pull_request": (guid,),  # a workflow_job payload: refused for its own reason
        "handlers.rollback.open_rollback": ("self-hosted", "octo/app", json.dumps(decision)),  # the old form
        "handlers.rollback.restore_rollback": ("self-hosted", "octo/app"),
        "handlers.rollback.manual_rollback_task": ("self-hosted", None, "a note"),
        "handlers.rollback.sweep": (),
        "handlers.prewarm.prewarm": (guid,),
        "handlers.causes.attribute_job": (guid,),
        "handlers.replay.run_bulk_replay": ("nope",),
        "handlers.recovery.recover_deliveries": (None,),
        "handlers.maintenance.trim": (),
        "handlers.maintenance.warm_dashboard": (),
        "handlers.maintenance.requeue_lost": (),
        "handlers.hosts.check_hosts": (),
        "handlers.watchdog.sweep_timeouts": (),
        "handlers.watchdog.find_stranded": (),
        "handlers.watchdog.rerun_runner_failures": (),
        "handlers.notify.fan_out": ("0-1",),  # a notice past the outbox's length: nothing to fan out
        "handlers.notify.send": ("0-1", "nobody"),
        "handlers.notify.send_test": ("nobody",),  # no such notifier: fails for that reason
    }
    assert set(calls) == set(tasks.TASKS)  # a new task joins this test
    for n, (path, args) in enumerate(calls.items()):
        spec = tasks.TASKS[path]
        tasks.queue(spec.queue, redis_client).enqueue_call(path, args=args, job_id=f"path-{n}", retry=None)
    drain(("events", "github"))
    outcomes: dict[str, str] = {}
    for n, path in enumerate(calls):
        job = Job.fetch(f"path-{n}", connection=redis_client, serializer=tasks.SERIALIZER)
        result = job.latest_result()
        outcomes[path] = f"{job.get_status().value}: {(result.exc_string or '').strip().splitlines()[-1:] if result else ''}"
    refused = {p: o for p, o in outcomes.items() if "task table" in o}
    assert refused == {}
    finished = {p for p, o in outcomes.items() if o.startswith("finished")}
    # the ones that fail, fail for a reason of their own: no App configured, no such replay, not a PR payload
    assert finished >= {"handlers.timings.record_job", "handlers.rollback.evaluate_after_job",
                        "handlers.rollback.manual_rollback_task", "handlers.rollback.sweep", "handlers.prewarm.prewarm",
                        "handlers.causes.attribute_job",
                        "handlers.maintenance.trim", "handlers.maintenance.warm_dashboard",
                        "handlers.watchdog.sweep_timeouts", "handlers.watchdog.rerun_runner_failures",
                        "handlers.hosts.check_hosts",
                        "handlers.notify.fan_out", "handlers.notify.send"}, outcomes
    assert "no notifier named 'nobody'" in outcomes["handlers.notify.send_test"]
    assert "the GitHub App is not configured" in outcomes["handlers.recovery.recover_deliveries"]
    assert "the GitHub App is not configured" in outcomes["handlers.watchdog.find_stranded"]
    assert "no replay nope" in outcomes["handlers.replay.run_bulk_replay"]
