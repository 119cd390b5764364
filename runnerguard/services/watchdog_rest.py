"""A job read back from GitHub's API, recorded as if delivered (`source: "rest"`), and the stranded-job check."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis

from config import Policy
from runnerguard.domain import watchdog as rules
from runnerguard.domain.names import is_repo
from runnerguard.domain.pools import pools_for
from runnerguard.domain.timeline import ACTION_RANK, JobSnapshot, format_time
from runnerguard.github import Forbidden, GitHubApp, GitHubError, Job, NotFound
from runnerguard.store import jobstore
from runnerguard.store import watchdog as store

log = logging.getLogger("runnerguard.watchdog")
RECORDED_STATUSES = ("in_progress", "completed")  # what GitHub's answer may move a job to (never back)
STRANDED_READ = 500  # candidates read from the index per sweep
STRANDED_ASKS = 50  # GitHub calls per sweep at most (the rest wait for the next sweep)


def _iso(value: datetime | None) -> str | None:
    return format_time(value.timestamp()) if value is not None else None


def rest_snapshot(job: Job, record: dict[str, Any]) -> JobSnapshot | None:
    """The timeline's view of GitHub's answer, built like WorkflowJobEvent.snapshot() (None: nothing to record)."""
    if job.status not in RECORDED_STATUSES:
        return None
    return JobSnapshot(action=job.status, repo_id=int(record["repo_id"]), repo=str(record["repo"]), job={
        "job_id": job.id, "run_id": job.run_id, "run_attempt": job.run_attempt,
        "workflow": job.workflow_name, "name": job.name, "head_branch": job.head_branch,
        "labels": list(job.labels), "runner_name": job.runner_name, "runner_id": job.runner_id,
        "runner_group": job.runner_group_name, "status": job.status, "conclusion": job.conclusion,
        "created_at": _iso(job.created_at), "started_at": _iso(job.started_at),
        "completed_at": _iso(job.completed_at), "html_url": job.html_url, "source": "rest",
    })


def record_answer(client: redis.Redis, policy: Policy, job: Job, record: dict[str, Any], *, now: float,
                  retention_seconds: int) -> dict[str, Any] | None:
    """Merge GitHub's answer into the job's timeline when it says more than the record (the same idempotent merge
    a delivery goes through); the merged record, or None when the answer adds nothing."""
    if job.id != record["job_id"]:
        return None  # never let an answer about another job into this record
    snapshot = rest_snapshot(job, record)
    if snapshot is None or ACTION_RANK[snapshot.action] <= ACTION_RANK.get(str(record.get("status")), -1):
        return None
    merged = jobstore.upsert(client, snapshot, seen_at=now, pools=pools_for(job.labels, policy.pools),
                             rule=policy.rollback.failure_rate.counting, retention_seconds=retention_seconds, now=now)
    log.info("job recorded from GitHub's API", extra={"repo": record["repo"], "job_id": job.id,
                                                      "status": job.status})
    return merged


@dataclass
class StrandedReport:
    candidates: int = 0
    asked: int = 0
    recorded: list[int] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)
    errors: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"candidates": self.candidates, "asked": self.asked, "recorded": self.recorded, "gone": self.gone,
                "errors": self.errors}


def find_stranded(client: redis.Redis, policy: Policy, github: GitHubApp, *, now: float, retention_seconds: int,
                  on_forbidden: Callable[[dict[str, Any], Forbidden], None] | None = None) -> StrandedReport:
    """Ask GitHub about each job seen queued or in progress and not seen complete for longer than its pool's
    max_run (or 6 h), once per job and at most every 30 minutes; record what GitHub says it became."""
    report = StrandedReport()
    members = jobstore.open_before(client, now - rules.shortest_stranded_after(policy.all_pools), STRANDED_READ)
    for record in jobstore.load(client, members):
        since = record.get("started_ts") or record.get("created_ts")
        if record.get("completed_ts") is not None or since is None:
            continue
        if now - since < rules.stranded_after(policy.all_pools, record.get("pools") or ()):
            continue
        report.candidates += 1
        if report.asked >= STRANDED_ASKS or not is_repo(record["repo"]):
            continue
        if not store.claim_check(client, record["repo_id"], record["job_id"], at=now, every=rules.CHECK_EVERY):
            continue  # asked within the last 30 minutes (by this sweep or another worker's)
        report.asked += 1
        try:
            job = github.for_repo(record["repo"]).get_job(record["repo"], record["job_id"])
        except NotFound:
            jobstore.forget_open(client, record)
            report.gone.append(record["job_id"])
            continue
        except Forbidden as exc:
            if on_forbidden is not None:
                on_forbidden(record, exc)
            report.errors += 1
            continue
        except GitHubError as exc:
            log.warning("stranded job check failed", extra={"repo": record["repo"], "job_id": record["job_id"],
                                                            "error": type(exc).__name__})
            report.errors += 1
            continue
        if record_answer(client, policy, job, record, now=now, retention_seconds=retention_seconds) is not None:
            report.recorded.append(record["job_id"])
    return report
