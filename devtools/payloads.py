"""Realistic workflow_job payloads (GitHub's compact JSON, varied like a real org's), for training and benchmarks."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from runnerguard.domain.events import WorkflowJobEvent
from runnerguard.domain.timeline import merge

FIXTURES = Path(__file__).resolve().parents[2] / "shared/fixtures/github/webhooks/workflow_job"
ACTIONS = ("queued", "in_progress", "completed")
STEP_NAMES = ("Set up job", "Run actions/checkout@v4", "Run actions/setup-node@v4", "Run actions/cache@v4",
              "Install dependencies", "Build", "Test", "Lint", "Upload artifact", "Post Run actions/checkout@v4",
              "Complete job")
JOB_NAMES = ("build", "test (3.11)", "test (3.12)", "lint", "e2e", "deploy", "docs", "package (linux-x64)")
WORKFLOWS = ("CI", "Release", "Nightly", "Docs")
LABELS = (["self-hosted", "linux", "x64"], ["self-hosted", "linux", "gpu"], ["self-hosted", "macOS", "ARM64"])


def fixture_bodies() -> list[bytes]:
    """The shared fixtures as GitHub sends them (compact JSON); empty when ../shared is absent."""
    if not FIXTURES.is_dir():
        return []
    return [json.dumps(json.loads(p.read_text()), separators=(",", ":")).encode()
            for p in sorted(FIXTURES.glob("*.payload.json"))]


def _template() -> dict[str, Any]:
    path = FIXTURES / "completed.success.with-organization.payload.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    return {"action": "completed", "workflow_job": {}, "repository": {"id": 1, "full_name": "octo-org/octo-repo",
            "name": "octo-repo", "owner": {"login": "octo-org"}}, "organization": {"login": "octo-org"},
            "sender": {"login": "octocat"}}


def _iso(epoch: float, millis: bool = False) -> str:
    text = datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (".000Z" if millis else "Z")


class PayloadFactory:
    """Deliveries of many jobs across a few repositories of one organisation: ids, SHAs, times and runners vary."""

    def __init__(self, seed: int = 1, repos: int = 20) -> None:
        self.rng = random.Random(seed)
        self._base = orjson.dumps(_template())
        self.repos = [(100_000_000 + i, f"repo-{i:02d}") for i in range(repos)]

    def job(self, job_id: int, created: float | None = None) -> Iterator[tuple[str, bytes]]:
        """(action, body) of the queued, in_progress and completed deliveries of one job created at `created`."""
        rng = self.rng
        repo_id, repo_name = rng.choice(self.repos)
        full = f"octo-org/{repo_name}"
        run_id = 10_000_000_000 + job_id // 4
        sha = f"{rng.getrandbits(160):040x}"
        created = 1_764_000_000 + (job_id % 1_000_000) * 7.0 if created is None else created
        started = created + rng.randint(1, 120)
        completed = started + rng.randint(30, 1800)
        name, workflow, labels = rng.choice(JOB_NAMES), rng.choice(WORKFLOWS), rng.choice(LABELS)
        runner = f"runner-{rng.randint(1, 40):02d}"
        conclusion = rng.choices(("success", "failure", "cancelled"), (90, 8, 2))[0]
        for action in ACTIONS:
            payload = orjson.loads(self._base)
            payload["action"] = action
            repo = payload["repository"]
            repo.update(id=repo_id, name=repo_name, full_name=full, html_url=f"https://github.com/{full}",
                        url=f"https://api.github.com/repos/{full}", node_id=f"R_kgDO{repo_id:08X}",
                        pushed_at=_iso(created - 30), updated_at=_iso(created - 3600))
            steps = []
            if action != "queued":
                at = started
                for number, step in enumerate(STEP_NAMES[: rng.randint(4, len(STEP_NAMES))], start=1):
                    took = rng.randint(0, 200)
                    done = action == "completed" or number < 3
                    steps.append({"name": step, "status": "completed" if done else "in_progress",
                                  "conclusion": ("success" if done else None), "number": number,
                                  "started_at": _iso(at, True),
                                  "completed_at": _iso(at + took, True) if done else None})
                    at += took
            job = payload["workflow_job"]
            job.update(
                id=job_id, run_id=run_id, run_attempt=1, node_id=f"CR_kwDO{job_id:012X}", head_sha=sha,
                head_branch=rng.choice(("main", "main", f"feature/{job_id % 97}")),
                url=f"https://api.github.com/repos/{full}/actions/jobs/{job_id}",
                html_url=f"https://github.com/{full}/actions/runs/{run_id}/job/{job_id}",
                run_url=f"https://api.github.com/repos/{full}/actions/runs/{run_id}",
                check_run_url=f"https://api.github.com/repos/{full}/check-runs/{job_id}",
                status=action, conclusion=conclusion if action == "completed" else None,
                created_at=_iso(created), started_at=_iso(started if action != "queued" else created),
                completed_at=_iso(completed) if action == "completed" else None, name=name, steps=steps,
                labels=labels, workflow_name=workflow,
                runner_id=rng.randint(1, 40) if action != "queued" else None,
                runner_name=runner if action != "queued" else None,
                runner_group_id=1 if action != "queued" else None,
                runner_group_name="Default" if action != "queued" else None,
            )
            yield action, orjson.dumps(payload)  # compact, as GitHub sends it


def training_samples(count: int = 3000, seed: int = 7) -> list[bytes]:
    """The fixtures and `count` generated deliveries: what the shipped dictionary is trained on."""
    factory = PayloadFactory(seed=seed)
    samples = fixture_bodies()
    job_id = 5_000_000_000
    while len(samples) < count:
        samples += [body for _action, body in factory.job(job_id)]
        job_id += 1
    return samples


def record_samples(count: int = 4500, seed: int = 8) -> list[bytes]:
    """Job records as the timeline stores them (after each delivery of a job), for the record dictionary."""
    factory = PayloadFactory(seed=seed)
    samples: list[bytes] = []
    job_id = 6_000_000_000
    while len(samples) < count:
        record = None
        for _action, body in factory.job(job_id, 1_764_000_000.0 + job_id % 100_000):
            record = merge(record, WorkflowJobEvent.parse(orjson.loads(body)).snapshot(), 1_764_000_000.0)
            record["pools"] = ["linux"]
            samples.append(orjson.dumps(record))
        job_id += 1
    return samples
