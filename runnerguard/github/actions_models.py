"""Typed records of GitHub Actions data: workflow runs, job steps, check-run annotations, parsed strictly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runnerguard.github.errors import MalformedResponse
from runnerguard.github.parsing import fail, obj, opt, req, time_field


@dataclass(frozen=True)
class Step:
    number: int
    name: str
    status: str  # "queued" | "in_progress" | "completed"
    conclusion: str | None
    started_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def from_json(cls, data: Any) -> Step:
        d = obj(data, "job step")
        return cls(
            number=req(d, "number", int, "job step"),
            name=req(d, "name", str, "job step"),
            status=req(d, "status", str, "job step"),
            conclusion=opt(d, "conclusion", str, "job step"),
            started_at=time_field(d, "started_at", "job step", optional=True),
            completed_at=time_field(d, "completed_at", "job step", optional=True),
        )


def steps_from(data: Any, what: str) -> tuple[Step, ...]:
    """A job's `steps` (absent or null is no steps; anything but a list of steps is malformed)."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise fail(what, "steps")
    return tuple(Step.from_json(s) for s in data)


def attempt_from(d: Mapping[str, Any], what: str) -> int:
    """`run_attempt`: 1 when absent (older payloads), else a positive int."""
    attempt = opt(d, "run_attempt", int, what)
    if attempt is None:
        return 1
    if attempt < 1:
        raise MalformedResponse(f"GitHub's {what} has no valid `run_attempt`")
    return attempt


@dataclass(frozen=True)
class Annotation:
    """One check-run annotation; for a workflow job GitHub writes runner losses and timeouts here."""

    path: str
    start_line: int
    end_line: int
    annotation_level: str | None  # "notice" | "warning" | "failure"
    title: str | None
    message: str | None
    raw_details: str | None
    start_column: int | None = None
    end_column: int | None = None

    @classmethod
    def from_json(cls, data: Any) -> Annotation:
        d = obj(data, "annotation")
        return cls(
            path=req(d, "path", str, "annotation"),
            start_line=req(d, "start_line", int, "annotation"),
            end_line=req(d, "end_line", int, "annotation"),
            annotation_level=opt(d, "annotation_level", str, "annotation"),
            title=opt(d, "title", str, "annotation"),
            message=opt(d, "message", str, "annotation"),
            raw_details=opt(d, "raw_details", str, "annotation"),
            start_column=opt(d, "start_column", int, "annotation"),
            end_column=opt(d, "end_column", int, "annotation"),
        )


@dataclass(frozen=True)
class WorkflowRun:
    id: int
    name: str | None
    event: str
    status: str | None
    conclusion: str | None
    head_sha: str
    head_branch: str | None
    run_number: int
    run_attempt: int
    repository_id: int
    repository_full_name: str
    # None when GitHub no longer knows the head repository (a deleted fork): never the repository itself.
    head_repository_id: int | None
    head_repository_full_name: str | None
    html_url: str
    created_at: datetime | None
    updated_at: datetime | None
    run_started_at: datetime | None

    @property
    def from_fork(self) -> bool:
        """The run's head commit came from another repository (a fork's pull request)."""
        return self.head_repository_id != self.repository_id

    @classmethod
    def from_json(cls, data: Any) -> WorkflowRun:
        d = obj(data, "workflow run")
        repo = obj(d.get("repository"), "workflow run repository")
        head = d.get("head_repository")
        head_id = head_name = None
        if head is not None:
            head_obj = obj(head, "workflow run head repository")
            head_id = req(head_obj, "id", int, "workflow run head repository")
            head_name = req(head_obj, "full_name", str, "workflow run head repository")
        attempt = attempt_from(d, "workflow run")
        return cls(
            id=req(d, "id", int, "workflow run"),
            name=opt(d, "name", str, "workflow run"),
            event=req(d, "event", str, "workflow run"),
            status=opt(d, "status", str, "workflow run"),
            conclusion=opt(d, "conclusion", str, "workflow run"),
            head_sha=req(d, "head_sha", str, "workflow run"),
            head_branch=opt(d, "head_branch", str, "workflow run"),
            run_number=req(d, "run_number", int, "workflow run"),
            run_attempt=attempt,
            repository_id=req(repo, "id", int, "workflow run repository"),
            repository_full_name=req(repo, "full_name", str, "workflow run repository"),
            head_repository_id=head_id,
            head_repository_full_name=head_name,
            html_url=req(d, "html_url", str, "workflow run"),
            created_at=time_field(d, "created_at", "workflow run", optional=True),
            updated_at=time_field(d, "updated_at", "workflow run", optional=True),
            run_started_at=time_field(d, "run_started_at", "workflow run", optional=True),
        )
