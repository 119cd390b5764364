"""The simulator's stand-ins for GitHub's web pages: a pull request, its unified diff (`.diff`), a job's page.

These answer the `html_url`s the simulator hands out when its `web_url` is its own address (`make demo`), so a link
printed or rendered by runnerguard opens something real instead of github.com. No authentication, as for a public
repository's pages; they are not API requests, so they are neither recorded nor rate limited.
"""

from __future__ import annotations

import difflib

from flask import Blueprint, Response, url_for
from markupsafe import escape

from devtools.github_simulator.app import sim
from devtools.github_simulator.repos import Pull, SimRepo

bp = Blueprint("sim_web", __name__)
PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font:15px/1.45 system-ui,sans-serif;margin:1rem auto;max-width:60rem;padding:0 1rem}}
pre{{background:#f6f8fa;padding:.8rem;overflow-x:auto;white-space:pre-wrap}}</style></head>
<body><p><small>GitHub simulator: a stand-in for {repo} on github.com</small></p>{body}</body></html>"""


def _page(title: str, repo: str, body: str) -> Response:
    return Response(PAGE.format(title=escape(title), repo=escape(repo), body=body), mimetype="text/html")


def _repo_and_pull(owner: str, repo: str, number: int) -> tuple[SimRepo, Pull]:
    r = sim().repo(f"{owner}/{repo}")
    return r, r.pull(number)


def pull_diff(r: SimRepo, pull: Pull) -> str:
    """`git diff` of the PR as GitHub shows it: from where head left base to head (for a merged PR, from the base
    before the merge), unified, with a/ and b/ prefixes."""
    head = r.branch_sha(pull.head) if f"refs/heads/{pull.head}" in r.refs else None
    if head is None:
        return ""
    if pull.merge_commit_sha:
        base_tip = r.store.commits[pull.merge_commit_sha].parents[0]
    else:
        base_tip = r.branch_sha(pull.base)
    start = r.store.merge_base(head, base_tip) or base_tip
    before, after = r.store.files_at(start), r.store.files_at(head)
    out: list[str] = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        out.append(f"diff --git a/{path} b/{path}\n")
        old_lines = (old or b"").decode("utf-8", "replace").splitlines(keepends=True)
        new_lines = (new or b"").decode("utf-8", "replace").splitlines(keepends=True)
        out.extend(difflib.unified_diff(old_lines, new_lines, "/dev/null" if old is None else f"a/{path}",
                                        "/dev/null" if new is None else f"b/{path}"))
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in out)


@bp.get("/<owner>/<repo>/pull/<int:number>.diff")
def diff(owner: str, repo: str, number: int) -> Response:
    r, pull = _repo_and_pull(owner, repo, number)
    return Response(pull_diff(r, pull), mimetype="text/plain")


@bp.get("/<owner>/<repo>/pull/<int:number>")
def pull_page(owner: str, repo: str, number: int) -> Response:
    r, pull = _repo_and_pull(owner, repo, number)
    state = "merged" if pull.merged else pull.state
    link = url_for("sim_web.diff", owner=r.owner, repo=r.name, number=number)
    body = (f"<h1>{escape(pull.title)} <small>#{number}</small></h1>"
            f"<p><b>{escape(state)}</b>: {escape(pull.user)} wants to merge <code>{escape(pull.head)}</code> into "
            f"<code>{escape(pull.base)}</code>. <a href=\"{escape(link)}\">Files changed (unified diff)</a></p>"
            f"<pre>{escape(pull.body or '')}</pre>"
            f"<h2>Files changed</h2><pre class=\"diff\">{escape(pull_diff(r, pull))}</pre>")
    return _page(f"{pull.title} · Pull Request #{number} · {r.full_name}", r.full_name, body)


@bp.get("/<owner>/<repo>/actions/runs/<int:run_id>/job/<int:job_id>")
def job_page(owner: str, repo: str, run_id: int, job_id: int) -> Response:
    r = sim().repo(f"{owner}/{repo}")
    job = r.jobs.get(job_id)
    if job is None:
        # A job sent only as a webhook (as `make demo` does) has no record here: say which one it is.
        body = f"<h1>Job {job_id}</h1><p>Run {run_id} of {escape(r.full_name)}. The simulator keeps no log of it.</p>"
    else:
        body = (f"<h1>{escape(job.name)} <small>job {job_id}</small></h1><p>Run {run_id} of "
                f"{escape(r.full_name)}: {escape(job.status)} {escape(job.conclusion or '')} on "
                f"{escape(job.runner_name or 'no runner')}</p>")
    return _page(f"Job {job_id} · {r.full_name}", r.full_name, body)
