"""Typed webhook events, parsed and validated once at the edge: the intake, every task and replay use these.

`parse` raises PayloadError (a permanent error: retrying cannot make a payload whole) naming the field and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runnerguard.domain.names import is_repo
from runnerguard.domain.timeline import ACTION_RANK, JobSnapshot, PayloadError, parse_time


def _get(mapping: Mapping[str, Any], key: str, kind: type | tuple[type, ...], *, required: bool = True,
         where: str = "") -> Any:
    value = mapping.get(key)
    if value is None:
        if required:
            raise PayloadError(f"missing {where}.{key}" if where else f"missing {key}")
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PayloadError(f"{where + '.' if where else ''}{key} has the wrong type ({type(value).__name__})")
    return value


def _repository(payload: Mapping[str, Any]) -> tuple[int, str]:
    repo = payload.get("repository")
    if not isinstance(repo, Mapping):
        raise PayloadError("missing repository")
    # Kept as sent (it is data in the record); `repo_is_safe` says whether it may meet a path, a URL or a key.
    return _get(repo, "id", int, where="repository"), _get(repo, "full_name", str, where="repository")


def _installation(payload: Mapping[str, Any]) -> int | None:
    installation = payload.get("installation")
    if isinstance(installation, Mapping) and isinstance(installation.get("id"), int):
        return int(installation["id"])
    return None


@dataclass(frozen=True)
class WorkflowJobEvent:
    """What one `workflow_job` delivery says about a job, validated."""

    action: str
    repo_id: int
    repo: str
    installation_id: int | None
    job_id: int
    run_id: int
    run_attempt: int
    labels: tuple[str, ...]
    workflow: str | None
    name: str | None
    head_branch: str | None
    runner_name: str | None
    runner_id: int | None
    runner_group: str | None
    status: str | None
    conclusion: str | None
    created_at: str | None  # absent on older GitHub Enterprise Server: the timeline finds the best time known
    started_at: str | None
    completed_at: str | None
    html_url: str | None

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> WorkflowJobEvent:
        action = payload.get("action")
        if action not in ACTION_RANK:
            raise PayloadError(f"unknown workflow_job action {str(action)[:40]!r}")
        job = payload.get("workflow_job")
        if not isinstance(job, Mapping):
            raise PayloadError("missing workflow_job")
        repo_id, repo = _repository(payload)
        labels = job.get("labels") or []
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise PayloadError("workflow_job.labels must be a list of strings")
        created = _get(job, "created_at", str, required=False)
        parse_time(created)
        for name in ("started_at", "completed_at"):
            parse_time(job.get(name))
        return cls(
            action=str(action), repo_id=repo_id, repo=repo, installation_id=_installation(payload),
            job_id=_get(job, "id", int), run_id=_get(job, "run_id", int),
            run_attempt=_get(job, "run_attempt", int, required=False) or 1,
            labels=tuple(labels),
            workflow=_get(job, "workflow_name", str, required=False),
            name=_get(job, "name", str, required=False),
            head_branch=_get(job, "head_branch", str, required=False),
            runner_name=_get(job, "runner_name", str, required=False),
            runner_id=_get(job, "runner_id", int, required=False),
            runner_group=_get(job, "runner_group_name", str, required=False),
            status=_get(job, "status", str, required=False),
            conclusion=_get(job, "conclusion", str, required=False),
            created_at=created, started_at=job.get("started_at"), completed_at=job.get("completed_at"),
            html_url=_get(job, "html_url", str, required=False),
        )

    @property
    def repo_is_safe(self) -> bool:
        """The repository name has the form GitHub gives it (owner/name, no dot-only halves)."""
        return is_repo(self.repo)

    def snapshot(self) -> JobSnapshot:
        """The timeline's view of this delivery (the fields a job record keeps, JSON-ready)."""
        return JobSnapshot(action=self.action, repo_id=self.repo_id, repo=self.repo, job={
            "job_id": self.job_id, "run_id": self.run_id, "run_attempt": self.run_attempt,
            "workflow": self.workflow, "name": self.name, "head_branch": self.head_branch,
            "labels": list(self.labels), "runner_name": self.runner_name, "runner_id": self.runner_id,
            "runner_group": self.runner_group, "status": self.status, "conclusion": self.conclusion,
            "created_at": self.created_at, "started_at": self.started_at, "completed_at": self.completed_at,
            "html_url": self.html_url,
        })


@dataclass(frozen=True)
class PullRequestEvent:
    """A `pull_request` delivery: what the rollback follows (its head branch, merged or not)."""

    action: str
    repo_id: int
    repo: str
    number: int
    head_ref: str
    head_repo_id: int | None
    merged: bool
    author: str | None

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> PullRequestEvent:
        action = payload.get("action")
        if not isinstance(action, str):
            raise PayloadError("missing action")
        pull = payload.get("pull_request")
        if not isinstance(pull, Mapping):
            raise PayloadError("missing pull_request")
        repo_id, repo = _repository(payload)
        head = pull.get("head")
        if not isinstance(head, Mapping):
            raise PayloadError("missing pull_request.head")
        head_repo = head.get("repo")
        user = pull.get("user")
        return cls(
            action=action, repo_id=repo_id, repo=repo, number=_get(pull, "number", int, where="pull_request"),
            head_ref=_get(head, "ref", str, where="pull_request.head"),
            head_repo_id=head_repo.get("id") if isinstance(head_repo, Mapping) and isinstance(head_repo.get("id"), int)
            else None,
            merged=pull.get("merged") is True,
            author=user.get("login") if isinstance(user, Mapping) and isinstance(user.get("login"), str) else None,
        )


def parse_workflow_job(payload: Mapping[str, Any]) -> JobSnapshot:
    """The timeline's snapshot of a workflow_job payload; raises PayloadError."""
    return WorkflowJobEvent.parse(payload).snapshot()
