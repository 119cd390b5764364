"""JSON bodies of workflow runs, check-run annotations and issues, shaped like GitHub's REST answers."""

from __future__ import annotations

import zlib
from typing import Any

from devtools.github_simulator.issues import SimIssue
from devtools.github_simulator.repos import Run, SimRepo
from devtools.github_simulator.shapes import iso, label, node_id, repository, user
from devtools.github_simulator.state import Simulator


def _minimal(sim: Simulator, api: str, repo: SimRepo, *, fork: bool) -> dict[str, Any]:
    return repository(sim, api, repo, full=False) | {"fork": fork}


def _head_commit(repo: SimRepo, run: Run) -> dict[str, Any]:
    commit = repo.store.commits.get(run.head_sha)
    if commit is None:  # a fork's commit the simulator never stored
        person = {"name": "Fork Author", "email": "fork@example.invalid"}
        return {"id": run.head_sha, "tree_id": "0" * 40, "message": "Change from a fork",
                "timestamp": iso(run.created_at), "author": person, "committer": person}
    person = {"name": commit.author_name, "email": commit.author_email}
    return {"id": run.head_sha, "tree_id": commit.tree, "message": commit.message, "timestamp": iso(commit.timestamp),
            "author": person, "committer": person}


def run(sim: Simulator, api: str, repo: SimRepo, r: Run) -> dict[str, Any]:
    url = f"{api}/repos/{repo.full_name}/actions/runs/{r.id}"
    head = r.head_repo or repo
    actor = user(api, sim.web_url, "octocat", 583231)
    workflow_id = zlib_id(r.path)
    return {
        "id": r.id, "name": r.name, "node_id": node_id("WorkflowRun", r.id), "check_suite_id": r.id + 1,
        "check_suite_node_id": node_id("CheckSuite", r.id + 1), "head_branch": r.head_branch, "head_sha": r.head_sha,
        "path": r.path, "run_number": r.run_number, "run_attempt": r.run_attempt, "referenced_workflows": [],
        "event": r.event, "status": r.status, "conclusion": r.conclusion, "workflow_id": workflow_id, "url": url,
        "html_url": f"{sim.web_url}/{repo.full_name}/actions/runs/{r.id}", "pull_requests": [],
        "created_at": iso(r.created_at), "updated_at": iso(r.updated_at or r.created_at), "actor": actor,
        "triggering_actor": actor, "run_started_at": iso(r.created_at), "jobs_url": f"{url}/jobs",
        "logs_url": f"{url}/logs", "check_suite_url": f"{api}/repos/{repo.full_name}/check-suites/{r.id + 1}",
        "artifacts_url": f"{url}/artifacts", "cancel_url": f"{url}/cancel", "rerun_url": f"{url}/rerun",
        "previous_attempt_url": f"{url}/attempts/{r.run_attempt - 1}" if r.run_attempt > 1 else None,
        "workflow_url": f"{api}/repos/{repo.full_name}/actions/workflows/{workflow_id}",
        "head_commit": _head_commit(repo, r), "repository": _minimal(sim, api, repo, fork=False),
        "head_repository": _minimal(sim, api, head, fork=r.head_repo is not None), "head_repository_id": head.id,
        "display_title": r.name,
    }


def zlib_id(text: str) -> int:
    return zlib.crc32(text.encode()) or 1


def annotation(sim: Simulator, repo: SimRepo, sha: str, a: dict[str, Any]) -> dict[str, Any]:
    return {**a, "blob_href": f"{sim.web_url}/{repo.full_name}/blob/{sha}/{a['path']}"}


def issue(sim: Simulator, api: str, repo: SimRepo, i: SimIssue) -> dict[str, Any]:
    url = f"{api}/repos/{repo.full_name}/issues/{i.number}"
    bot = f"{sim.app_slug}[bot]"
    return {
        "id": i.id, "node_id": node_id("Issue", i.id), "url": url, "repository_url": f"{api}/repos/{repo.full_name}",
        "labels_url": f"{url}/labels{{/name}}", "comments_url": f"{url}/comments", "events_url": f"{url}/events",
        "html_url": f"{sim.web_url}/{repo.full_name}/issues/{i.number}", "number": i.number, "state": i.state,
        "state_reason": i.state_reason, "title": i.title, "body": i.body,
        "user": user(api, sim.web_url, i.user, 2 if i.user == bot else 583231, "Bot" if i.user == bot else "User"),
        "labels": [label(api, repo, name) for name in repo.labels.get(i.number, [])], "assignee": None,
        "assignees": [], "milestone": None, "locked": False, "active_lock_reason": None,
        "comments": len(repo.comments.get(i.number, [])), "closed_at": iso(i.closed_at),
        "created_at": iso(i.created_at), "updated_at": iso(i.updated_at), "closed_by": None,
        "author_association": "NONE",
    }


def pull_as_issue(sim: Simulator, api: str, repo: SimRepo, number: int) -> dict[str, Any]:
    """A pull request as the issues API lists it: an issue with a `pull_request` key."""
    p = repo.pulls[number]
    body = issue(sim, api, repo, SimIssue(p.number, p.id, p.title, p.body, p.user, p.created_at, p.updated_at,
                                          state=p.state, closed_at=p.closed_at))
    html = f"{sim.web_url}/{repo.full_name}/pull/{number}"
    body["html_url"] = html
    body["pull_request"] = {"url": f"{api}/repos/{repo.full_name}/pulls/{number}", "html_url": html,
                            "diff_url": f"{html}.diff", "patch_url": f"{html}.patch", "merged_at": iso(p.merged_at)}
    return body
