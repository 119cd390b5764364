"""`flask --app app deliveries send-test`: sign and post a sample workflow_job to the running service."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import click
import requests

from config import ConfigError
from config.service_url import service_url
from runnerguard.domain.signatures import sign
from runnerguard.domain.timeline import format_time
from runnerguard.store import jobstore
from runnerguard.web.state import state

TEST_REPO = {"id": 1, "name": "runnerguard-send-test", "full_name": "example/runnerguard-send-test",
             "owner": {"login": "example"}, "private": True}
LABELS = ["self-hosted", "Linux", "X64"]
NOT_ANSWERING = "runnerguard is not answering at {url} ({why}); is `make run` running? (URL from RUNNERGUARD_URL, " \
                "else HOST and PORT, in the environment or .env; or give --url)"
REFUSED = "{url} answered {status}: {body}"
SENT = "sent {action} for job {job_id} of {repo} to {url}: {status} {body}"
SEE_IT = "see it within a minute: {url}/ (dashboard), or curl -H \"Authorization: Bearer $ADMIN_TOKEN\" " \
         "'{url}/api/jobs?repo={repo}'"
NEXT = "finish it: flask --app app deliveries send-test --action completed --job-id {job_id}"


def sample_payload(action: str, job_id: int, *, now: float, conclusion: str, created: float | None = None,
                   started: float | None = None) -> dict[str, Any]:
    """A workflow_job payload of GitHub's shape: by default queued 90 s ago, taken by a runner 60 s ago."""
    created = now - 90 if created is None else created
    started = max(created, now - 60) if started is None else started
    runner = {"runner_id": 1, "runner_name": "send-test-runner", "runner_group_id": 1, "runner_group_name": "Default"}
    job: dict[str, Any] = {
        "id": job_id, "run_id": job_id, "run_attempt": 1, "workflow_name": "runnerguard send-test", "name": "build",
        "head_branch": "main", "head_sha": "0" * 40, "labels": LABELS, "status": action, "conclusion": None,
        "created_at": format_time(created), "started_at": format_time(created), "completed_at": None,
        "runner_id": None, "runner_name": None, "runner_group_id": None, "runner_group_name": None, "steps": [],
        "html_url": f"https://github.com/{TEST_REPO['full_name']}/actions/runs/{job_id}/job/{job_id}",
    }
    if action in ("in_progress", "completed"):
        job |= runner | {"started_at": format_time(started)}
    if action == "completed":
        job |= {"conclusion": conclusion, "completed_at": format_time(now)}
    return {"action": action, "workflow_job": job, "repository": TEST_REPO, "sender": {"login": "runnerguard"}}


@click.command("send-test")
@click.option("--action", type=click.Choice(["queued", "in_progress", "completed"]), default="queued",
              show_default=True, help="which workflow_job delivery to send")
@click.option("--job-id", type=click.IntRange(1, 2**53), default=None,
              help="the job to send it for (default: a new one); reuse it to move one job along")
@click.option("--conclusion", type=click.Choice(["success", "failure", "cancelled"]), default="success",
              show_default=True, help="for --action completed")
@click.option("--url", default=None, help="the service's base URL (default: RUNNERGUARD_URL, else HOST and PORT)")
def send_test_command(action: str, job_id: int | None, conclusion: str, url: str | None) -> None:
    """Sign (with the configured webhook secret) and post a sample workflow_job to the running service."""
    try:
        base = service_url({"RUNNERGUARD_URL": url} if url else None)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    known: dict[str, Any] = {}
    if job_id is not None:
        # Moving a job along: keep the times its earlier deliveries gave, as GitHub does.
        found = jobstore.load(state().redis, [f"{TEST_REPO['id']}:{job_id}"])
        known = found[0] if found else {}
    job_id = job_id or int(time.time() * 1000) % 2**31
    body = json.dumps(sample_payload(action, job_id, now=time.time(), conclusion=conclusion,
                                     created=known.get("created_ts"), started=known.get("started_ts"))).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "runnerguard-send-test",
               "X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": str(uuid.uuid4()),
               "X-Hub-Signature-256": sign(state().settings.webhook_secret, body)}
    try:
        answer = requests.post(f"{base}/webhooks/github", data=body, headers=headers, timeout=10,
                               allow_redirects=False)
    except requests.RequestException as exc:
        why = "connection refused" if isinstance(exc, requests.ConnectionError) else type(exc).__name__
        raise click.ClickException(NOT_ANSWERING.format(url=base, why=why)) from None
    text = answer.text.strip()[:200]
    if answer.status_code not in (200, 202):
        raise click.ClickException(REFUSED.format(url=base, status=answer.status_code, body=text))
    click.echo(SENT.format(action=action, job_id=job_id, repo=TEST_REPO["full_name"], url=base,
                           status=answer.status_code, body=text))
    click.echo(SEE_IT.format(url=base, repo=TEST_REPO["full_name"]))
    if action != "completed":
        click.echo(NEXT.format(job_id=job_id))
