"""The simulator's `workflow_job` webhooks match GitHub's payload schemas (octokit/webhooks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from devtools.github_simulator import SimulatorServer
from runnerguard.domain.signatures import verify
from tests.github_fixtures import REPO, WebhookReceiver


@pytest.fixture(scope="module")
def schemas(shared_dir: Path) -> Registry:
    registry: Registry = Registry()
    for path in sorted((shared_dir / "fixtures/github/schemas").rglob("*.json")):
        contents = json.loads(path.read_text())
        registry = registry.with_resource(contents["$id"], Resource.from_contents(contents,
                                                                                   default_specification=DRAFT7))
    return registry


@pytest.mark.usefixtures("sim_repo")
@pytest.mark.parametrize("action", ["queued", "waiting", "in_progress", "completed"])
def test_workflow_job_webhook_matches_githubs_schema(github_sim: SimulatorServer, webhook_receiver: WebhookReceiver,
                                                     schemas: Registry, action: str) -> None:
    job = github_sim.add_job(REPO, labels=["self-hosted", "linux"], conclusion="failure")
    github_sim.configure_webhook(webhook_receiver.url, "s")
    github_sim.emit_workflow_job(REPO, job.id, action)
    (received,) = webhook_receiver.received
    assert verify(["s"], received.body, received.headers["X-Hub-Signature-256"])
    payload = json.loads(received.body)
    schema = schemas.contents(f"workflow_job${action}")
    problems = list(Draft7Validator(schema, registry=schemas).iter_errors(payload))
    assert not problems, "\n".join(f"{list(e.absolute_path)}: {e.message[:160]}" for e in problems[:10])
    assert payload["workflow_job"]["status"] == action
