"""JSON bodies shaped like GitHub's (every field its OpenAPI description marks required)."""

from __future__ import annotations

import base64
import json
import zlib
from datetime import UTC, datetime
from typing import Any

from devtools.github_simulator.gitstore import Entry
from devtools.github_simulator.repos import Pull, SimJob, SimRepo
from devtools.github_simulator.state import SimInstallation, Simulator
from devtools.github_simulator.webhooks import SimDelivery


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(kind: str, number: int) -> str:
    return base64.b64encode(f"0:{kind}{number}".encode()).decode()


def user(api: str, web: str, login: str, uid: int, kind: str = "User") -> dict[str, Any]:
    u = f"{api}/users/{login}"
    return {
        "login": login, "id": uid, "node_id": node_id("User", uid), "avatar_url": f"{web}/avatars/{login}",
        "gravatar_id": "", "url": u, "html_url": f"{web}/{login}", "followers_url": f"{u}/followers",
        "following_url": f"{u}/following{{/other_user}}", "gists_url": f"{u}/gists{{/gist_id}}",
        "starred_url": f"{u}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{u}/subscriptions",
        "organizations_url": f"{u}/orgs", "repos_url": f"{u}/repos", "events_url": f"{u}/events{{/privacy}}",
        "received_events_url": f"{u}/received_events", "type": kind, "site_admin": False,
    }


_REPO_URLS = {
    "archive_url": "/{archive_format}{/ref}", "assignees_url": "/assignees{/user}", "blobs_url": "/git/blobs{/sha}",
    "branches_url": "/branches{/branch}", "collaborators_url": "/collaborators{/collaborator}",
    "comments_url": "/comments{/number}", "commits_url": "/commits{/sha}", "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}", "contributors_url": "/contributors", "deployments_url": "/deployments",
    "downloads_url": "/downloads", "events_url": "/events", "forks_url": "/forks",
    "git_commits_url": "/git/commits{/sha}", "git_refs_url": "/git/refs{/sha}", "git_tags_url": "/git/tags{/sha}",
    "hooks_url": "/hooks", "issue_comment_url": "/issues/comments{/number}",
    "issue_events_url": "/issues/events{/number}", "issues_url": "/issues{/number}", "keys_url": "/keys{/key_id}",
    "labels_url": "/labels{/name}", "languages_url": "/languages", "merges_url": "/merges",
    "milestones_url": "/milestones{/number}", "notifications_url": "/notifications{?since,all,participating}",
    "pulls_url": "/pulls{/number}", "releases_url": "/releases{/id}", "stargazers_url": "/stargazers",
    "statuses_url": "/statuses/{sha}", "subscribers_url": "/subscribers", "subscription_url": "/subscription",
    "tags_url": "/tags", "teams_url": "/teams", "trees_url": "/git/trees{/sha}",
}


def repository(sim: Simulator, api: str, repo: SimRepo, *, full: bool = True) -> dict[str, Any]:
    web, url = sim.web_url, f"{api}/repos/{repo.full_name}"
    body: dict[str, Any] = {
        "id": repo.id, "node_id": node_id("Repository", repo.id), "name": repo.name, "full_name": repo.full_name,
        "owner": user(api, web, repo.owner, repo.owner_id, "Organization"), "private": repo.private,
        "html_url": f"{web}/{repo.full_name}", "description": None, "fork": False, "url": url,
        **{key: url + suffix for key, suffix in _REPO_URLS.items()},
        "clone_url": f"{web}/{repo.full_name}.git", "git_url": f"git://{web.split('://')[-1]}/{repo.full_name}.git",
        "ssh_url": f"git@{web.split('://')[-1]}:{repo.full_name}.git", "svn_url": f"{web}/{repo.full_name}",
        "mirror_url": None, "homepage": None, "language": None, "forks": 0, "forks_count": 0, "stargazers_count": 0,
        "watchers": 0, "watchers_count": 0, "size": 0, "default_branch": repo.default_branch,
        "open_issues": 0, "open_issues_count": sum(p.state == "open" for p in repo.pulls.values())
        + sum(i.state == "open" for i in repo.issues.values()),
        "has_issues": repo.has_issues, "has_projects": True, "has_wiki": True, "has_pages": False,
        "has_downloads": True,
        "has_discussions": False, "archived": False, "disabled": False, "license": None,
        "visibility": "private" if repo.private else "public",
        "pushed_at": iso(repo.created_at), "created_at": iso(repo.created_at), "updated_at": iso(repo.created_at),
    }
    if full:
        body |= {"network_count": 0, "subscribers_count": 0}
    return body


def installation(sim: Simulator, api: str, inst: SimInstallation) -> dict[str, Any]:
    return {
        "id": inst.id, "app_id": sim.app_id, "app_slug": sim.app_slug, "target_id": inst.account_id,
        "target_type": inst.account_type, "single_file_name": None, "repository_selection": "selected",
        "access_tokens_url": f"{api}/app/installations/{inst.id}/access_tokens",
        "repositories_url": f"{api}/installation/repositories",
        "html_url": f"{sim.web_url}/organizations/{inst.account}/settings/installations/{inst.id}",
        "events": ["workflow_job", "workflow_run"], "permissions": dict(inst.permissions),
        "account": user(api, sim.web_url, inst.account, inst.account_id, inst.account_type),
        "created_at": iso(inst.created_at), "updated_at": iso(inst.created_at),
        "suspended_by": None, "suspended_at": iso(inst.created_at) if inst.suspended else None,
    }


def app(sim: Simulator, api: str) -> dict[str, Any]:
    return {
        "id": sim.app_id, "slug": sim.app_slug, "node_id": node_id("Integration", sim.app_id), "name": sim.app_slug,
        "owner": user(api, sim.web_url, "runnerguard-owner", 1), "description": "runnerguard (simulated)",
        "external_url": sim.web_url, "html_url": f"{sim.web_url}/apps/{sim.app_slug}",
        "created_at": iso(sim.created_at), "updated_at": iso(sim.created_at), "permissions": {},
        "events": ["workflow_job", "workflow_run"],
    }


def ref(api: str, repo: SimRepo, name: str) -> dict[str, Any]:
    sha = repo.refs[name]
    return {
        "ref": name, "node_id": node_id("Ref", zlib.crc32(name.encode())),
        "url": f"{api}/repos/{repo.full_name}/git/{name}",
        "object": {"type": "commit", "sha": sha, "url": f"{api}/repos/{repo.full_name}/git/commits/{sha}"},
    }


def tree(api: str, repo: SimRepo, sha: str, *, recursive: bool) -> dict[str, Any]:
    def entry(path: str, e: Entry) -> dict[str, Any]:
        item: dict[str, Any] = {"path": path, "mode": e.mode, "type": e.type, "sha": e.sha,
                                "url": f"{api}/repos/{repo.full_name}/git/{e.type}s/{e.sha}"}
        if e.type == "blob":
            item["size"] = len(repo.store.blobs[e.sha])
        return item

    return {"sha": sha, "url": f"{api}/repos/{repo.full_name}/git/trees/{sha}", "truncated": False,
            "tree": [entry(path, e) for path, e in repo.store.walk(sha, recursive=recursive)]}


def commit(sim: Simulator, api: str, repo: SimRepo, sha: str) -> dict[str, Any]:
    c = repo.store.commits[sha]
    base = f"{api}/repos/{repo.full_name}/git/commits"
    person = {"name": c.author_name, "email": c.author_email, "date": iso(c.timestamp)}
    return {
        "sha": sha, "node_id": node_id("Commit", int(sha[:8], 16)), "url": f"{base}/{sha}",
        "html_url": f"{sim.web_url}/{repo.full_name}/commit/{sha}", "author": person, "committer": person,
        "message": c.message, "tree": {"sha": c.tree, "url": f"{api}/repos/{repo.full_name}/git/trees/{c.tree}"},
        "parents": [{"sha": p, "url": f"{base}/{p}", "html_url": f"{sim.web_url}/{repo.full_name}/commit/{p}"}
                    for p in c.parents],
        "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None,
                         "verified_at": None},
    }


def content(sim: Simulator, api: str, repo: SimRepo, path: str, *, sha: str, ref_name: str) -> dict[str, Any]:
    data = repo.store.blobs[sha]
    url = f"{api}/repos/{repo.full_name}/contents/{path}?ref={ref_name}"
    git = f"{api}/repos/{repo.full_name}/git/blobs/{sha}"
    html = f"{sim.web_url}/{repo.full_name}/blob/{ref_name}/{path}"
    encoded = base64.b64encode(data).decode()
    # GitHub wraps the base64 at 60 characters.
    wrapped = "\n".join(encoded[i:i + 60] for i in range(0, len(encoded), 60)) + "\n"
    return {"type": "file", "encoding": "base64", "size": len(data), "name": path.rsplit("/", 1)[-1], "path": path,
            "content": wrapped, "sha": sha, "url": url, "git_url": git, "html_url": html,
            "download_url": f"{sim.web_url}/raw/{repo.full_name}/{ref_name}/{path}",
            "_links": {"self": url, "git": git, "html": html}}


def pull(sim: Simulator, api: str, repo: SimRepo, p: Pull, *, full: bool = True) -> dict[str, Any]:
    web, url = sim.web_url, f"{api}/repos/{repo.full_name}/pulls/{p.number}"
    issue = f"{api}/repos/{repo.full_name}/issues/{p.number}"
    html = f"{web}/{repo.full_name}/pull/{p.number}"
    repo_body = repository(sim, api, repo, full=False)
    owner = user(api, web, repo.owner, repo.owner_id, "Organization")

    def side(branch: str) -> dict[str, Any]:
        sha = repo.refs.get(f"refs/heads/{branch}") or p.merge_commit_sha or ""
        return {"label": f"{repo.owner}:{branch}", "ref": branch, "sha": sha, "user": owner, "repo": repo_body}

    statuses = f"{api}/repos/{repo.full_name}/statuses/{side(p.head)['sha']}"
    review_comment = f"{api}/repos/{repo.full_name}/pulls/comments{{/number}}"
    body: dict[str, Any] = {
        "url": url, "id": p.id, "node_id": node_id("PullRequest", p.id), "html_url": html,
        "diff_url": f"{html}.diff", "patch_url": f"{html}.patch", "issue_url": issue, "commits_url": f"{url}/commits",
        "review_comments_url": f"{url}/comments", "review_comment_url": review_comment,
        "comments_url": f"{issue}/comments", "statuses_url": statuses, "number": p.number, "state": p.state,
        "locked": False, "title": p.title, "user": user(api, web, p.user, 1, "Bot"), "body": p.body,
        "labels": [label(api, repo, name) for name in repo.labels.get(p.number, [])], "milestone": None,
        "active_lock_reason": None, "created_at": iso(p.created_at), "updated_at": iso(p.updated_at),
        "closed_at": iso(p.closed_at), "merged_at": iso(p.merged_at), "merge_commit_sha": p.merge_commit_sha,
        "assignee": None, "assignees": [], "requested_reviewers": [], "requested_teams": [],
        "head": side(p.head), "base": side(p.base), "author_association": "NONE", "auto_merge": None,
        "draft": p.draft,
        "_links": {k: {"href": v} for k, v in {
            "self": url, "html": html, "issue": issue, "comments": f"{issue}/comments",
            "review_comments": f"{url}/comments", "review_comment": review_comment,
            "commits": f"{url}/commits", "statuses": statuses}.items()},
    }
    if full:
        body |= {"merged": p.merged, "mergeable": None if p.merged else True, "mergeable_state": "clean",
                 "merged_by": None, "comments": len(repo.comments.get(p.number, [])), "review_comments": 0,
                 "maintainer_can_modify": False, "commits": 1, "additions": 0, "deletions": 0, "changed_files": 0}
    return body


def label(api: str, repo: SimRepo, name: str) -> dict[str, Any]:
    lid = zlib.crc32(f"{repo.id}:{name}".encode())
    return {"id": lid, "node_id": node_id("Label", lid), "url": f"{api}/repos/{repo.full_name}/labels/{name}",
            "name": name, "description": "", "color": "ededed", "default": False}


def comment(sim: Simulator, api: str, repo: SimRepo, number: int, c: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": c["id"], "node_id": node_id("IssueComment", c["id"]),
        "url": f"{api}/repos/{repo.full_name}/issues/comments/{c['id']}",
        "html_url": f"{sim.web_url}/{repo.full_name}/{'pull' if number in repo.pulls else 'issues'}/{number}"
                    f"#issuecomment-{c['id']}",
        "issue_url": f"{api}/repos/{repo.full_name}/issues/{number}", "body": c["body"],
        "user": user(api, sim.web_url, f"{sim.app_slug}[bot]", 2, "Bot"),
        "created_at": iso(c["at"]), "updated_at": iso(c["at"]), "author_association": "NONE",
    }


def job(sim: Simulator, api: str, repo: SimRepo, j: SimJob) -> dict[str, Any]:
    base = f"{api}/repos/{repo.full_name}/actions"
    return {
        "id": j.id, "run_id": j.run_id, "run_url": f"{base}/runs/{j.run_id}", "run_attempt": j.run_attempt,
        "node_id": node_id("CheckRun", j.id), "head_sha": j.head_sha, "url": f"{base}/jobs/{j.id}",
        "html_url": f"{sim.web_url}/{repo.full_name}/actions/runs/{j.run_id}/job/{j.id}", "status": j.status,
        "conclusion": j.conclusion, "created_at": iso(j.created_at), "started_at": iso(j.started_at or j.created_at),
        "completed_at": iso(j.completed_at), "name": j.name, "steps": [dict(step) for step in j.steps],
        "check_run_url": f"{api}/repos/{repo.full_name}/check-runs/{j.id}", "labels": list(j.labels),
        "runner_id": j.runner_id, "runner_name": j.runner_name, "runner_group_id": j.runner_group_id,
        "runner_group_name": j.runner_group_name, "workflow_name": j.workflow_name, "head_branch": j.head_branch,
    }


def delivery(d: SimDelivery, *, detail: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": d.id, "guid": d.guid, "delivered_at": iso(d.delivered_at), "redelivery": d.redelivery,
        "duration": d.duration, "status": d.status, "status_code": d.status_code, "event": d.event,
        "action": d.action, "installation_id": d.installation_id, "repository_id": d.repository_id,
        "throttled_at": None,
    }
    if detail:
        body |= {"url": d.url, "request": {"headers": d.request_headers, "payload": json.loads(d.body)},
                 "response": {"headers": d.response_headers, "payload": d.response_body}}
    return body
