"""The job timeline as pure data: parse a workflow_job payload into a snapshot, merge snapshots into one record.

The merge is a join: commutative, associative and idempotent, so deliveries arriving in any order, any number of
times, end in the same record. Each action keeps one snapshot (ties broken by content, never by arrival order) and
the time it was first seen; every derived field is computed from the snapshots alone.

Older GitHub Enterprise Server versions send `workflow_job` without `created_at`. Such a job is recorded with the
best time known — a `queued` delivery's `started_at` (GitHub sets it to the time the job was queued), else the
earliest arrival of one of its deliveries — and `created_at_approximate` says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runnerguard.errors import InvalidInput

ACTION_RANK = {"queued": 0, "waiting": 1, "in_progress": 2, "completed": 3}
STARTED_ACTIONS = ("in_progress", "completed")
QUEUED_ACTIONS = ("queued", "waiting")


class PayloadError(InvalidInput):
    """A signed payload lacks what the timeline needs: a permanent error, never retried."""


def parse_time(value: object) -> float | None:
    """GitHub's ISO 8601 timestamps -> epoch seconds; None stays None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError(f"timestamp must be a string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError(f"bad timestamp {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_time(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class JobSnapshot:
    """What one workflow_job delivery says about a job."""

    action: str
    repo_id: int
    repo: str
    job: dict[str, Any]  # the fields we keep, JSON-ready

    @property
    def key(self) -> tuple[int, int]:
        return self.repo_id, int(self.job["job_id"])


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def merge(record: Mapping[str, Any] | None, snapshot: JobSnapshot, seen_at: float) -> dict[str, Any]:
    """Fold one snapshot into a stored record (None for a new job) and return the new record."""
    snapshots: dict[str, Any] = dict(record["snapshots"]) if record else {}
    seen: dict[str, float] = dict(record["seen"]) if record else {}
    current = snapshots.get(snapshot.action)
    # Two different deliveries for the same action: keep the greater by content, so order cannot matter.
    if current is None or _canonical(snapshot.job) > _canonical(current):
        snapshots[snapshot.action] = snapshot.job
    seen[snapshot.action] = min(seen.get(snapshot.action, seen_at), seen_at)
    return derive({"repo_id": snapshot.repo_id, "repo": snapshot.repo, "snapshots": snapshots, "seen": seen})


def merge_records(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Join two records of the same job (used by tests to prove the join laws)."""
    snapshots = dict(a["snapshots"])
    for action, job in b["snapshots"].items():
        if action not in snapshots or _canonical(job) > _canonical(snapshots[action]):
            snapshots[action] = job
    seen = dict(a["seen"])
    for action, when in b["seen"].items():
        seen[action] = min(seen.get(action, when), when)
    return derive({"repo_id": a["repo_id"], "repo": a["repo"], "snapshots": snapshots, "seen": seen})


def _first(snapshots: Mapping[str, Any], actions: Sequence[str], field: str) -> Any:
    """The field from the most advanced snapshot that has it."""
    for action in actions:
        job = snapshots.get(action)
        if job is not None and job.get(field) is not None:
            return job[field]
    return None


def derive(record: dict[str, Any]) -> dict[str, Any]:
    """Compute the public fields of a record from its snapshots."""
    snapshots = record["snapshots"]
    by_rank = sorted(snapshots, key=ACTION_RANK.__getitem__, reverse=True)
    top = by_rank[0]

    def get(field: str) -> Any:
        return _first(snapshots, by_rank, field)

    created = parse_time(get("created_at"))
    # A queued delivery carries started_at = created_at; only a runner picking the job up really starts it.
    started = parse_time(_first(snapshots, STARTED_ACTIONS, "started_at"))
    approximate = created is None
    if created is None:
        # No delivery of this job said when it was created (older GHES): the queued delivery's started_at is the
        # queue time; without one, the first arrival (never after the start) is the best bound there is.
        created = parse_time(_first(snapshots, QUEUED_ACTIONS, "started_at"))
        if created is None and record["seen"]:
            created = min(record["seen"].values())
            if started is not None:
                created = min(created, started)
    completed = parse_time(_first(snapshots, ("completed",), "completed_at"))
    conclusion = _first(snapshots, ("completed",), "conclusion")
    runner_id = get("runner_id")
    ran = runner_id is not None or "in_progress" in snapshots
    if not ran:
        started = None  # cancelled before a runner took it: no run at all
    queue_seconds = max(0.0, started - created) if started is not None and created is not None else None
    run_seconds = max(0.0, completed - started) if completed is not None and started is not None else None
    record.update(
        job_id=get("job_id"),
        run_id=get("run_id"),
        run_attempt=get("run_attempt"),
        workflow=get("workflow"),
        name=get("name"),
        head_branch=get("head_branch"),
        labels=get("labels") or [],
        runner_name=get("runner_name"),
        runner_id=runner_id,
        runner_group=get("runner_group"),
        html_url=get("html_url"),
        status="completed" if top == "completed" else top,
        conclusion=conclusion,
        created_at=format_time(created),
        created_at_approximate=approximate,
        started_at=format_time(started),
        completed_at=format_time(completed),
        created_ts=created,
        started_ts=started,
        completed_ts=completed,
        queue_seconds=queue_seconds,
        run_seconds=run_seconds,
        seen={action: record["seen"][action] for action in sorted(record["seen"])},
        # "rest" when the most advanced state was read back from GitHub's API (the watchdog), not delivered
        source=snapshots[top].get("source") or "webhook",
    )
    return record
