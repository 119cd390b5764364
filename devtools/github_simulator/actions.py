"""Workflow runs as GitHub moves them: cancel, force-cancel, job re-runs, and the control API that seeds them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from devtools.github_simulator.errors import ApiError, not_found
from devtools.github_simulator.repos import Run, SimJob, SimRepo, next_id

CANCEL_COMPLETED = "Cannot cancel a workflow run that is completed."
# GitHub answers 403 (not 409) when a job cannot be re-run, with these texts (as reported from api.github.com in
# cli/cli#9221 and metabase/metabase#70916): the run has not finished yet, or it may not be retried at all.
RERUN_RUNNING = "This workflow is already running"
RERUN_REFUSED = "This workflow run cannot be retried"
ANNOTATION_LEVELS = ("notice", "warning", "failure")


@dataclass(frozen=True)
class ActionCall:
    """One cancel / force-cancel / rerun request as the simulator answered it."""

    kind: str  # "cancel" | "force-cancel" | "rerun"
    repo: str
    target: int  # the run id (cancel, force-cancel) or the job id (rerun)
    status: int  # the HTTP status answered
    at: float
    new_job_id: int | None = None  # rerun: the job of the new attempt


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finish_job(job: SimJob, conclusion: str, now: float) -> None:
    job.status, job.conclusion, job.completed_at = "completed", conclusion, now
    for step in job.steps:
        # The running step is cancelled with the job; the ones that never started are skipped.
        if step.get("status") == "in_progress":
            step.update(status="completed", conclusion=conclusion, completed_at=step.get("completed_at") or _iso(now))
        elif step.get("status") == "queued":
            step.update(status="completed", conclusion="skipped")


def stop_run(repo: SimRepo, run_id: int, *, force: bool, now: float) -> None:
    """A cancel (or force-cancel): 409 once completed; a run that ignores cancels ends only when forced."""
    run = repo.runs.get(run_id)
    if run is None:
        raise not_found()
    if run.status == "completed":
        raise ApiError(409, CANCEL_COMPLETED)
    run.cancel_requested, run.updated_at = True, now
    if run.ignores_cancel and not force:
        return
    run.status, run.conclusion = "completed", "cancelled"
    for job_id in run.jobs:
        job = repo.jobs[job_id]
        if job.status != "completed":
            _finish_job(job, "cancelled", now)


def rerun_job(repo: SimRepo, job_id: int, *, now: float) -> SimJob:
    """Re-run one job: a new attempt of its run with a new job id (as GitHub gives each attempt's job its own)."""
    old = repo.jobs.get(job_id)
    if old is None:
        raise not_found()
    run = repo.runs[old.run_id]
    headers = {"X-Accepted-GitHub-Permissions": "actions=write"}  # GitHub names the endpoint's permission anyway
    if run.status != "completed":
        raise ApiError(403, RERUN_RUNNING, headers=headers)
    if not run.rerunnable:
        raise ApiError(403, RERUN_REFUSED, headers=headers)
    run.run_attempt += 1
    run.status, run.conclusion, run.cancel_requested, run.updated_at = "queued", None, False, now
    job = SimJob(next_id(), run.id, old.name, list(old.labels), old.head_sha, old.head_branch, old.workflow_name, now,
                 run_attempt=run.run_attempt, rerun_of=old.id)
    repo.jobs[job.id] = job
    run.jobs.append(job.id)
    return job


def step(number: int, name: str, status: str = "completed", conclusion: str | None = "success", *,
         started_at: str | None = None, completed_at: str | None = None) -> dict[str, Any]:
    """One step as GitHub's job answer lists it (times as ISO strings, or None)."""
    return {"name": name, "status": status, "conclusion": conclusion, "number": number,
            "started_at": started_at, "completed_at": completed_at}


def annotation(message: str, *, path: str = ".github", level: str = "failure", title: str | None = "",
               start_line: int = 1, end_line: int | None = None, raw_details: str | None = None) -> dict[str, Any]:
    if level not in ANNOTATION_LEVELS:
        raise ValueError(f"annotation level must be one of {ANNOTATION_LEVELS}")
    return {"path": path, "start_line": start_line, "end_line": end_line or start_line, "start_column": None,
            "end_column": None, "annotation_level": level, "title": title, "message": message,
            "raw_details": raw_details}


class ActionsControl:
    """The control API of runs, jobs, steps and annotations; mixed into `Simulator`, which provides these."""

    lock: threading.RLock
    clock: Callable[[], float]
    action_calls: list[ActionCall]
    repos: dict[str, SimRepo]

    def repo(self, full_name: str) -> SimRepo:  # pragma: no cover - Simulator's own
        raise NotImplementedError

    def add_run(self, full_name: str, *, workflow_name: str = "CI", event: str = "push",
                head_repository: str | None = None, head_sha: str | None = None, head_branch: str | None = None,
                status: str = "in_progress", conclusion: str | None = None, run_attempt: int = 1,
                rerunnable: bool = True, ignores_cancel: bool = False, run_id: int | None = None) -> Run:
        """A workflow run; `head_repository` ("owner/name") makes it a run from a fork, as a fork's PR runs are."""
        with self.lock:
            repo = self.repo(full_name)
            head_repo = None
            if head_repository is not None and head_repository.lower() != full_name.lower():
                owner, name = head_repository.split("/")
                head_repo = self.repos.get(head_repository.lower()) or SimRepo(owner, name, "main", self.clock())
            branch = head_branch or repo.default_branch
            sha = head_sha or (repo.branch_sha(repo.default_branch) if repo.refs else "0" * 40)
            now = self.clock()
            run = Run(run_id or next_id(), workflow_name, sha, branch, status=status, conclusion=conclusion,
                      event=event, run_attempt=run_attempt, run_number=len(repo.runs) + 1, created_at=now,
                      updated_at=now, head_repo=head_repo, rerunnable=rerunnable, ignores_cancel=ignores_cancel)
            repo.runs[run.id] = run
            return run

    def set_steps(self, full_name: str, job_id: int, steps: Sequence[Mapping[str, Any]]) -> None:
        """Replace a job's steps (dicts shaped like `actions.step(...)`)."""
        with self.lock:
            self.repo(full_name).jobs[job_id].steps = [dict(s) for s in steps]

    def add_annotations(self, full_name: str, check_run_id: int, annotations: Iterable[Mapping[str, Any]]) -> None:
        """Annotations of a check run (a job's id is its check run's id), shaped like `actions.annotation(...)`."""
        with self.lock:
            self.repo(full_name).annotations.setdefault(check_run_id, []).extend(dict(a) for a in annotations)

    def finish_job(self, full_name: str, job_id: int, conclusion: str = "success") -> None:
        with self.lock:
            _finish_job(self.repo(full_name).jobs[job_id], conclusion, self.clock())

    def record_call(self, kind: str, repo: str, target: int, status: int, new_job_id: int | None = None) -> None:
        with self.lock:
            self.action_calls.append(ActionCall(kind, repo, target, status, self.clock(), new_job_id))

    def calls(self, kind: str | None = None, *, target: int | None = None, accepted: bool | None = None
              ) -> list[ActionCall]:
        """The cancel / force-cancel / rerun calls made, oldest first; `accepted` keeps only 2xx (or only not)."""
        with self.lock:
            return [c for c in self.action_calls if (kind is None or c.kind == kind)
                    and (target is None or c.target == target)
                    and (accepted is None or (200 <= c.status < 300) == accepted)]
