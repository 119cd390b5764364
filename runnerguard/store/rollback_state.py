"""Rollback state per pool and repository, with its history: healthy, pr_open, rolled_back, restoring, blocked."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import redis
from redis.lock import Lock

from runnerguard.store import keys

HEALTHY, PR_OPEN, ROLLED_BACK, RESTORING = "healthy", "pr_open", "rolled_back", "restoring"
# A trigger fired and the PR could not be opened (no App, no installation, a missing permission, no workflow file,
# dry_run): `reason` says why; the next sweep tries again.
BLOCKED = "blocked"
STATES = (HEALTHY, PR_OPEN, ROLLED_BACK, RESTORING, BLOCKED)
HISTORY_KEPT = 100


@dataclass(frozen=True)
class RollbackState:
    pool: str
    repo: str
    state: str = HEALTHY
    trigger: str | None = None
    reason: str | None = None
    pr_url: str | None = None
    pr_number: int | None = None
    branch: str | None = None
    commit_sha: str | None = None
    opened_at: float | None = None
    updated_at: float | None = None
    closed_at: float | None = None  # a rollback PR closed unmerged: the cooldown runs from here
    last_comment_at: float | None = None
    restore_pr_url: str | None = None
    restore_pr_number: int | None = None
    dry_run: bool = False
    error: str | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)  # [{"path", "changes": [Change.as_dict()]}]
    unresolved: list[dict[str, Any]] = field(default_factory=list)
    pr_author: str | None = None  # the login that opened the PR (the App's bot): only its PR events move the state
    trigger_summary: str | None = None  # "failing, 75% of 8 jobs in 24h": what fired, beside a blocked reason

    def public(self) -> dict[str, Any]:
        """The `GET /api/rollbacks` row."""
        return {
            "pool": self.pool, "repo": self.repo, "state": self.state, "trigger": self.trigger,
            "reason": self.reason, "pr_url": self.pr_url, "pr_number": self.pr_number,
            "opened_at": self.opened_at, "updated_at": self.updated_at, "restore_pr_url": self.restore_pr_url,
            "restore_pr_number": self.restore_pr_number, "dry_run": self.dry_run, "error": self.error,
            "trigger_summary": self.trigger_summary,
        }


def load(client: redis.Redis, pool: str, repo: str) -> RollbackState:
    raw = client.get(keys.rollback(pool, repo))
    if not raw:
        return RollbackState(pool=pool, repo=repo)
    data = json.loads(raw)
    # a state written by a later release may hold fields this one does not know: keep what it knows
    return RollbackState(**{k: v for k, v in data.items() if k in RollbackState.__dataclass_fields__})


def save(client: redis.Redis, new: RollbackState, *, event: str, now: float | None = None,
         extra: Mapping[str, Any] | None = None) -> RollbackState:
    """Store the state and append the transition to its history."""
    now = time.time() if now is None else now
    new = replace(new, updated_at=now)
    entry = {"at": now, "event": event, "state": new.state, "reason": new.reason, "pr_url": new.pr_url,
             **(extra or {})}
    pipe = client.pipeline(transaction=True)
    pipe.set(keys.rollback(new.pool, new.repo), json.dumps(asdict(new)))
    pipe.sadd(keys.ROLLBACKS, f"{new.pool}\t{new.repo}")
    pipe.rpush(keys.rollback_history(new.pool, new.repo), json.dumps(entry))
    pipe.ltrim(keys.rollback_history(new.pool, new.repo), -HISTORY_KEPT, -1)
    pipe.execute()
    return new


def history(client: redis.Redis, pool: str, repo: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in client.lrange(keys.rollback_history(pool, repo), 0, -1)]


def list_states(client: redis.Redis) -> list[RollbackState]:
    members = sorted(m.decode() for m in client.smembers(keys.ROLLBACKS))  # type: ignore[union-attr]
    return [load(client, *member.split("\t", 1)) for member in members]


def lock(client: redis.Redis, pool: str, repo: str, *, timeout: float, blocking_timeout: float) -> Lock:
    """One worker at a time acts on a pool's rollback in a repository."""
    lock: Lock = client.lock(keys.rollback_lock(pool, repo), timeout=timeout, blocking_timeout=blocking_timeout)
    return lock


PENDING_TTL = 14 * 86400  # as long as RQ keeps a failed task that could be requeued


def save_pending(client: redis.Redis, pool: str, repo: str, decision: Mapping[str, Any]) -> None:
    client.set(keys.rollback_pending(pool, repo), json.dumps(dict(decision)), ex=PENDING_TTL)


def load_pending(client: redis.Redis, pool: str, repo: str) -> dict[str, Any] | None:
    raw = client.get(keys.rollback_pending(pool, repo))
    return json.loads(raw) if raw else None
