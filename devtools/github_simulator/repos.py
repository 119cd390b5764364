"""One simulated repository: refs over a git object store, pull requests, issues, comments, labels, workflow runs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devtools.github_simulator.errors import ApiError, not_found, validation_failed
from devtools.github_simulator.gitstore import MODE_FILE, MergeConflict, ObjectStore

if TYPE_CHECKING:
    from devtools.github_simulator.issues import SimIssue

WORKFLOWS_DIR = ".github/workflows/"
_ids = itertools.count(1_000_001)


def next_id() -> int:
    """Ids unique across the whole simulator, like GitHub's global ids."""
    return next(_ids)


@dataclass
class Pull:
    number: int
    id: int
    title: str
    body: str | None
    head: str
    base: str
    user: str
    created_at: float
    updated_at: float
    draft: bool = False
    state: str = "open"
    merged: bool = False
    merged_at: float | None = None
    closed_at: float | None = None
    merge_commit_sha: str | None = None


@dataclass
class Run:
    id: int
    name: str
    head_sha: str
    head_branch: str
    status: str = "in_progress"
    conclusion: str | None = None
    jobs: list[int] = field(default_factory=list)
    event: str = "push"
    run_attempt: int = 1
    run_number: int = 1
    created_at: float = 0.0
    updated_at: float = 0.0
    head_repo: SimRepo | None = None  # None: the repository itself; else the fork the run's head commit came from
    path: str = ".github/workflows/ci.yml"
    rerunnable: bool = True  # False: GitHub refuses a rerun (e.g. a run older than 30 days)
    ignores_cancel: bool = False  # True: a hung runner; a cancel is accepted but only a force-cancel ends the run
    cancel_requested: bool = False


@dataclass
class SimJob:
    id: int
    run_id: int
    name: str
    labels: list[str]
    head_sha: str
    head_branch: str
    workflow_name: str
    created_at: float
    status: str = "queued"
    conclusion: str | None = None
    started_at: float | None = None
    completed_at: float | None = None
    runner_id: int | None = None
    runner_name: str | None = None
    runner_group_id: int | None = None
    runner_group_name: str | None = None
    run_attempt: int = 1
    steps: list[dict[str, Any]] = field(default_factory=list)  # GitHub's step shape: name, number, status, ...
    rerun_of: int | None = None  # the job id of the earlier attempt this job re-runs


@dataclass
class SimRepo:
    owner: str
    name: str
    default_branch: str
    created_at: float
    private: bool = False
    id: int = field(default_factory=next_id)
    owner_id: int = field(default_factory=next_id)
    store: ObjectStore = field(default_factory=ObjectStore)
    refs: dict[str, str] = field(default_factory=dict)
    pulls: dict[int, Pull] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    labels: dict[int, list[str]] = field(default_factory=dict)
    runs: dict[int, Run] = field(default_factory=dict)
    jobs: dict[int, SimJob] = field(default_factory=dict)
    annotations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # by check run (= job) id
    issues: dict[int, SimIssue] = field(default_factory=dict)  # number -> issues.SimIssue; numbers shared with pulls
    has_issues: bool = True
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    # --- commits -------------------------------------------------------------------------------------------------

    def commit_files(self, files: dict[str, bytes | None], message: str, *, branch: str, now: float) -> str:
        """Commit on top of `branch` (created when absent), as a push would; returns the new commit sha."""
        ref = f"refs/heads/{branch}"
        parent = self.refs.get(ref)
        current = self.store.flatten(self.store.commits[parent].tree) if parent else {}
        for path, data in files.items():
            if data is None:
                current.pop(path, None)
            else:
                current[path] = (MODE_FILE, self.store.put_blob(data))
        tree = self.store.tree_from_files(current)
        commit = self.store.put_commit(tree, [parent] if parent else [], message, name="Simulator",
                                       email="sim@example.invalid", timestamp=int(now))
        self.refs[ref] = commit.sha
        return commit.sha

    def require_commits(self) -> None:
        if not self.refs:
            raise ApiError(409, "Git Repository is empty.")

    def branch_sha(self, branch: str) -> str:
        sha = self.refs.get(f"refs/heads/{branch}")
        if sha is None:
            raise not_found()
        return sha

    def resolve(self, ref: str | None) -> str:
        """A commit sha from a branch name, "heads/x", "refs/heads/x" or a sha; default branch when None."""
        self.require_commits()
        if ref is None:
            return self.branch_sha(self.default_branch)
        for candidate in (ref, f"refs/{ref}", f"refs/heads/{ref}", f"refs/tags/{ref}"):
            if candidate in self.refs:
                return self.refs[candidate]
        if ref in self.store.commits:
            return ref
        raise ApiError(404, f"No commit found for the ref {ref}")

    # --- refs ----------------------------------------------------------------------------------------------------

    def workflow_changes(self, new_sha: str) -> list[str]:
        """Workflow files the commits new to this repository (not reachable from any ref) would change."""
        known: set[str] = set()
        for sha in self.refs.values():
            known |= self.store.ancestors(sha)
        changed: set[str] = set()
        for sha in self.store.ancestors(new_sha) - known:
            commit = self.store.commits[sha]
            mine = {p: s for p, s in self.store.flatten(commit.tree).items() if p.startswith(WORKFLOWS_DIR)}
            parent = commit.parents[0] if commit.parents else None
            before = self.store.flatten(self.store.commits[parent].tree) if parent else {}
            before = {p: s for p, s in before.items() if p.startswith(WORKFLOWS_DIR)}
            changed |= {p for p in set(mine) | set(before) if mine.get(p) != before.get(p)}
        return sorted(changed)

    def check_push(self, new_sha: str, permissions: dict[str, str]) -> None:
        if permissions.get("workflows") != "write":
            changed = self.workflow_changes(new_sha)
            if changed:
                raise ApiError(
                    403,
                    f"refusing to allow a GitHub App to create or update workflow `{changed[0]}` "
                    "without `workflows` permission",
                    headers={"X-Accepted-GitHub-Permissions": "workflows=write"},
                )

    def create_ref(self, ref: str, sha: str, permissions: dict[str, str]) -> None:
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise ApiError(422, "Reference name must start with 'refs/' and have at least two slashes.")
        if ref in self.refs:
            raise ApiError(422, "Reference already exists")
        if sha not in self.store.commits:
            raise ApiError(422, "Object does not exist")
        self.check_push(sha, permissions)
        self.refs[ref] = sha

    def update_ref(self, ref: str, sha: str, force: bool, permissions: dict[str, str]) -> None:
        if ref not in self.refs:
            raise ApiError(422, "Reference does not exist")
        if sha not in self.store.commits:
            raise ApiError(422, "Object does not exist")
        if not force and not self.store.is_ancestor(self.refs[ref], sha):
            raise ApiError(422, "Update is not a fast forward")
        self.check_push(sha, permissions)
        self.refs[ref] = sha

    def delete_ref(self, ref: str) -> None:
        if self.refs.pop(ref, None) is None:
            raise ApiError(422, "Reference does not exist")

    # --- pulls -----------------------------------------------------------------------------------------------------

    def open_pull(self, *, title: str, head: str, base: str, body: str | None, draft: bool, user: str, now: float
                  ) -> Pull:
        head_branch = head.split(":", 1)[1] if ":" in head else head
        if f"refs/heads/{head_branch}" not in self.refs:
            raise validation_failed("PullRequest", "", code="invalid", field="head")
        if f"refs/heads/{base}" not in self.refs:
            raise validation_failed("PullRequest", "", code="invalid", field="base")
        for pull in self.pulls.values():
            if pull.state == "open" and pull.head == head_branch and pull.base == base:
                raise validation_failed("PullRequest", f"A pull request already exists for {self.owner}:{head_branch}.")
        head_sha, base_sha = self.branch_sha(head_branch), self.branch_sha(base)
        if head_branch == base or self.store.is_ancestor(head_sha, base_sha):
            raise validation_failed("PullRequest", f"No commits between {base} and {head_branch}")
        number = next(self.numbers)
        pull = Pull(number, next_id(), title, body, head_branch, base, user, now, now, draft=draft)
        self.pulls[number] = pull
        return pull

    def pull(self, number: int) -> Pull:
        if number not in self.pulls:
            raise not_found()
        return self.pulls[number]

    def merge_pull(self, number: int, *, now: float) -> str:
        """Merge like the green button (a merge commit on the base branch); returns the merge commit sha."""
        pull = self.pull(number)
        if pull.state != "open":
            raise ApiError(405, "Pull Request is not mergeable")
        head_sha, base_sha = self.branch_sha(pull.head), self.branch_sha(pull.base)
        try:
            tree = self.store.merged_tree(head_sha, base_sha, self.store.merge_base(head_sha, base_sha))
        except MergeConflict as exc:
            raise ApiError(405, f"Merge conflict in {exc}") from None
        commit = self.store.put_commit(tree, [base_sha, head_sha], f"Merge pull request #{number} from {pull.head}",
                                       name="Simulator", email="sim@example.invalid", timestamp=int(now))
        self.refs[f"refs/heads/{pull.base}"] = commit.sha
        pull.state, pull.merged, pull.merged_at, pull.closed_at = "closed", True, now, now
        pull.merge_commit_sha, pull.updated_at = commit.sha, now
        return commit.sha

    def issue_exists(self, number: int) -> None:
        """Every pull request is an issue, as on GitHub; an issue number is either."""
        if number not in self.pulls and number not in self.issues:
            raise not_found()
