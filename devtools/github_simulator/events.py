"""Webhook payloads the simulator sends, built from its own state (shaped like octokit's examples)."""

from __future__ import annotations

from typing import Any

from devtools.github_simulator import shapes
from devtools.github_simulator.repos import SimJob
from devtools.github_simulator.state import Simulator

ACTIONS = ("queued", "waiting", "in_progress", "completed")


def workflow_job(sim: Simulator, api: str, full_name: str, job: SimJob, action: str) -> dict[str, Any]:
    """A `workflow_job` payload for `job` as it stands now."""
    if action not in ACTIONS:
        raise ValueError(f"workflow_job action must be one of {ACTIONS}")
    repo = sim.repo(full_name)
    installation = sim.installation_for(full_name)
    body = shapes.job(sim, api, repo, job)
    body |= {"status": action, "run_attempt": job.run_attempt}
    if action == "completed" and body["conclusion"] is None:
        body["conclusion"] = "success"
    if action in ("queued", "waiting"):
        body |= {"conclusion": None, "completed_at": None, "runner_id": None, "runner_name": None}
    return {
        "action": action,
        "workflow_job": body,
        "repository": shapes.repository(sim, api, repo, full=False) | {
            "is_template": False, "web_commit_signoff_required": False, "topics": [], "custom_properties": {}},
        "organization": organization(api, repo.owner, repo.owner_id),
        "installation": {"id": installation.id, "node_id": shapes.node_id("Installation", installation.id)},
        "sender": shapes.user(api, sim.web_url, "octocat", 583231),
    }


def organization(api: str, login: str, org_id: int) -> dict[str, Any]:
    url = f"{api}/orgs/{login}"
    return {
        "login": login, "id": org_id, "node_id": shapes.node_id("Organization", org_id), "url": url,
        "repos_url": f"{url}/repos", "events_url": f"{url}/events", "hooks_url": f"{url}/hooks",
        "issues_url": f"{url}/issues", "members_url": f"{url}/members{{/member}}",
        "public_members_url": f"{url}/public_members{{/member}}", "avatar_url": f"{api}/avatars/{login}",
        "description": None,
    }
