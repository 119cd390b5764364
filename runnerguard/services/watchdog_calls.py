"""What every watchdog action shares: the App and a repository's client, and what follows a call (the record, the
metric, the latest actions, the notice), or a 403 (blocked, by the permission's name)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from config import Policy
from runnerguard.domain import watchdog as rules
from runnerguard.domain.names import is_repo
from runnerguard.domain.notices import WATCHDOG, Notice
from runnerguard.domain.pools import Pool
from runnerguard.errors import Permanent
from runnerguard.github import Forbidden, GitHubApp, GitHubError, InstallationClient, NotFound
from runnerguard.services import notify
from runnerguard.store import metrics
from runnerguard.store import watchdog as store

log = logging.getLogger("runnerguard.watchdog")
METRIC = "runnerguard_watchdog_total"
NOT_CONFIGURED = "the GitHub App is not configured (GITHUB_APP_ID and GITHUB_PRIVATE_KEY_PATH)"
BLOCKED_RETRY = 30 * 60  # a repository where the App lacks a permission is tried again this often
SAFE_URL = re.compile(r"^https://[^\s\"'<>]{1,500}$")


@dataclass
class SweepReport:
    acted: list[str] = field(default_factory=list)  # "cancel 123", "force_cancel 123", "rerun 456"
    recorded: list[int] = field(default_factory=list)  # jobs whose end was read back from GitHub
    blocked: list[str] = field(default_factory=list)
    skipped: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"acted": self.acted, "recorded": self.recorded, "blocked": self.blocked, "skipped": self.skipped,
                "errors": self.errors}


@dataclass
class WatchdogCalls:
    """What every watchdog action needs: the App, the client for a repository, and what is recorded after a call."""

    redis: redis.Redis
    policy: Policy
    github: GitHubApp | None
    retention_seconds: int
    clock: Callable[[], float] = time.time

    @property
    def app(self) -> GitHubApp:
        if self.github is None:
            raise Permanent(NOT_CONFIGURED)
        return self.github
    def _client_for(self, record: Mapping[str, Any], pool: Pool, action: str, now: float,
                    report: SweepReport) -> InstallationClient | None:
        repo = str(record["repo"])
        if not is_repo(repo):
            report.skipped += 1  # a name GitHub would not give: never near a URL
            return None
        blocked = store.blocked(self.redis).get(repo.lower())
        if blocked is not None and now - float(blocked.get("at", 0)) < BLOCKED_RETRY:
            report.skipped += 1
            return None
        try:
            return self.app.for_repo(repo)
        except NotFound:
            report.skipped += 1  # not installed there (any more)
            return None
        except GitHubError as exc:
            self._failed(record, action, exc, report)
            return None

    def _done(self, record: Mapping[str, Any], pool: Pool, action: str, status: int, *, now: float,
              report: SweepReport, words: Mapping[str, str]) -> None:
        repo_id, job_id = record["repo_id"], record["job_id"]
        store.note(self.redis, repo_id, job_id, {"pool": pool.name, f"{action}_status": status})
        metrics.incr(self.redis, METRIC, {"pool": pool.name, "action": action})
        store.remember(self.redis, {"at": now, "action": action, "status": status, "pool": pool.name,
                                    "repo": record["repo"], "job_id": job_id, "run_id": record.get("run_id"),
                                    "name": record.get("name")})
        if store.clear_blocked(self.redis, str(record["repo"])):
            log.info("watchdog unblocked", extra={"repo": record["repo"]})
        report.acted.append(f"{action} {job_id}")
        log.info("watchdog acted", extra={"repo": record["repo"], "job_id": job_id, "status": f"{action} {status}"})
        if status >= 300:
            return  # the run had already completed: nothing a person needs to hear
        name = str(record.get("name") or job_id)
        url = record.get("html_url")
        notify.emit(self.redis, Notice(
            event=WATCHDOG, state=rules.NOTICE_STATES[action], at=now, pool=pool.name, repo=str(record["repo"]),
            summary=rules.SUMMARY[action].format(name=name, repo=record["repo"], pool=pool.name, **words),
            evidence={"job_id": job_id, "run_id": record.get("run_id"), "run_attempt": record.get("run_attempt"),
                      "started_at": record.get("started_at"), **words},
            links={"job": url} if isinstance(url, str) and SAFE_URL.match(url) else {},
            next_step=rules.NEXT_STEP[action],
        ))

    def _blocked(self, record: Mapping[str, Any], pool: Pool | None, action: str, exc: Forbidden, *, now: float,
                 report: SweepReport) -> None:
        """A 403: recorded by name (the missing permission), shown as blocked until a call succeeds there."""
        permission = exc.missing_permission or "actions"
        repo = str(record["repo"])
        reason = f"the App lacks the `{permission}` permission" if exc.missing_permission else f"GitHub refused: {exc}"
        entry = {"repo": repo, "pool": pool.name if pool else None, "action": action, "permission": permission,
                 "reason": reason[:300], "at": now, "job_id": record["job_id"]}
        first = store.set_blocked(self.redis, repo, entry)
        report.blocked.append(repo)
        log.warning("watchdog blocked", extra={"repo": repo, "job_id": record["job_id"], "error": reason[:200]})
        if first:
            notify.emit(self.redis, Notice(
                event=WATCHDOG, state="blocked", at=now, pool=pool.name if pool else None, repo=repo,
                summary=rules.BLOCKED_SUMMARY.format(action=action.replace("_", "-"), repo=repo,
                                                     permission=permission),
                evidence={"job_id": record["job_id"], "permission": permission},
                next_step=f"Give the App `{permission}: write` (README: permissions).",
            ))

    def _failed(self, record: Mapping[str, Any], action: str, exc: GitHubError, report: SweepReport) -> None:
        report.errors += 1
        log.warning("watchdog call failed", extra={"repo": record["repo"], "job_id": record["job_id"],
                                                   "status": action, "error": type(exc).__name__})
