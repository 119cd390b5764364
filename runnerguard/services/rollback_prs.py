"""Open, follow and restore rollback pull requests: idempotent, locked per pool and repo, own branches only."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis
from redis.exceptions import LockError

from runnerguard.domain import notices, rollback_text
from runnerguard.domain.notices import Notice
from runnerguard.domain.pools import Pool
from runnerguard.domain.rules import Decision
from runnerguard.domain.timeline import format_time
from runnerguard.domain.workflows import (
    Change,
    WorkflowParseError,
    is_workflow_path,
    revert_runs_on,
    rewrite_runs_on,
)
from runnerguard.errors import Permanent
from runnerguard.github import Forbidden, GitHubApp, InstallationClient, NotFound, PullRequest, Unprocessable
from runnerguard.services.notify import emit
from runnerguard.store import jobstore
from runnerguard.store import rollback_state as states
from runnerguard.store.rollback_state import RollbackState

log = logging.getLogger("runnerguard.rollback")
COMMENT_EVERY = 3600
LOCK_TIMEOUT = 600
SUMMARY_JOBS = 500  # counted failures read for the PR's cause summary line
NO_APP = "the GitHub App is not configured (open /setup)"
NOT_INSTALLED = "the GitHub App is not installed on {repo}"
NO_WORKFLOW = "no workflow file has a runs-on value of this pool to rewrite"
DRY_RUN = "dry_run is on in the policy (the PR it would open is in the history)"


class RollbackError(Permanent):
    """A rollback cannot go ahead (a missing permission, a repository it cannot see); recorded, not retried."""


class Blocked(RollbackError):
    """A fired trigger cannot open its PR for a reason a person must fix: the state becomes `blocked`."""


@dataclass
class Rollbacks:
    """Everything a rollback needs, passed in: Redis, the GitHub App, the cooldown, the clock."""

    redis: redis.Redis
    github: GitHubApp | None
    cooldown_seconds: int
    dry_run: bool = False
    clock: Callable[[], float] = time.time

    # --- opening --------------------------------------------------------------------------------------------------

    def open(self, pool: Pool, repo: str, decision: Decision) -> RollbackState:
        """Open the rollback PR for one pool in one repo, or add evidence to the one that is open."""
        lock = states.lock(self.redis, pool.name, repo, timeout=LOCK_TIMEOUT, blocking_timeout=30)
        if not lock.acquire():
            raise TimeoutError(f"rollback of {pool.name} in {repo} is locked by another worker")  # retried later
        try:
            return self._open_locked(pool, repo, decision)
        finally:
            try:
                lock.release()
            except LockError:
                pass  # expired while we worked: the next holder starts from the recorded state

    def _open_locked(self, pool: Pool, repo: str, decision: Decision) -> RollbackState:
        now = self.clock()
        current = states.load(self.redis, pool.name, repo)
        if current.state == states.PR_OPEN:
            return self._add_evidence(current, pool, decision, now)
        if current.state in (states.ROLLED_BACK, states.RESTORING):
            return current
        if current.closed_at is not None and now - current.closed_at < self.cooldown_seconds:
            return current  # a person closed the last one unmerged: respect that for the cooldown
        evidence = self._failing_jobs(pool, decision, now)
        try:
            return self._create(current, pool, repo, decision, evidence=evidence, now=now)
        except Forbidden as exc:
            why = (f"the App lacks the `{exc.missing_permission}` permission" if exc.missing_permission
                   else f"GitHub refused: {exc}")
            return self._block(current, decision, why, now, error=why)
        except Blocked as exc:
            return self._block(current, decision, str(exc), now)

    def _block(self, current: RollbackState, decision: Decision, why: str, now: float, *, event: str = "blocked",
               error: str | None = None, extra: Mapping[str, Any] | None = None) -> RollbackState:
        """Record that the trigger fired and could not act, and why; a person hears of it once per reason."""
        summary = rollback_text.trigger_summary(decision)
        saved = states.save(self.redis, replace(current, state=states.BLOCKED, reason=why, error=error,
                                                trigger=decision.trigger, trigger_summary=summary),
                            event=event, now=now, extra=extra)
        log.warning("rollback blocked", extra={"pool": current.pool, "repo": current.repo, "error": why})
        if current.state != states.BLOCKED or current.reason != why:
            emit(self.redis, Notice(
                event=notices.BLOCKED, state=states.BLOCKED, at=now, pool=current.pool, repo=current.repo,
                summary=f"{current.pool}: {summary}; rollback blocked: {why}",
                evidence={"trigger": decision.trigger, "finished": decision.finished, "failed": decision.failed},
                next_step="open /setup" if why == NO_APP else ""))
        return saved

    def _notify(self, event: str, state: RollbackState, summary: str, *, resolved: bool = False,
                evidence: Mapping[str, Any] | None = None) -> None:
        links = {k: v for k, v in (("pr", state.pr_url), ("restore_pr", state.restore_pr_url)) if v}
        emit(self.redis, Notice(event=event, state=state.state, at=state.updated_at or self.clock(), pool=state.pool,
                                repo=state.repo, summary=summary, links=links, resolved=resolved,
                                evidence=dict(evidence or {})))

    def _failing_jobs(self, pool: Pool, decision: Decision, now: float) -> list[dict[str, Any]]:
        since = now - (decision.window_seconds or 86400)
        return jobstore.failed_jobs(self.redis, pool.name, since)

    def _client(self, repo: str) -> InstallationClient:
        if self.github is None:
            raise Blocked(NO_APP)
        try:
            return self.github.for_repo(repo)
        except NotFound:
            raise Blocked(NOT_INSTALLED.format(repo=repo)) from None

    def _create(self, current: RollbackState, pool: Pool, repo: str, decision: Decision, *,
                evidence: Sequence[Mapping[str, Any]], now: float) -> RollbackState:
        client = self._client(repo)
        base = client.get_repo(repo).default_branch
        base_sha = client.get_branch_sha(repo, base)
        new_files, changes, unresolved = self._rewrite(client, repo, base_sha, pool)
        counts = {path: len(c) for path, c in changes.items()}
        title = rollback_text.title(pool.name, pool.fallback, decision)
        counted = jobstore.failed_jobs(self.redis, pool.name, now - (decision.window_seconds or 86400),
                                       limit=SUMMARY_JOBS)
        body = rollback_text.body(pool=pool.name, repo=repo, fallback=pool.fallback, decision=decision,
                                  jobs=evidence, files=counts, unresolved=unresolved, counted=counted)
        recorded = replace(
            current, trigger=decision.trigger, reason=decision.reason, error=None, closed_at=None,
            changes=[{"path": p, "changes": [c.to_dict() for c in cs]} for p, cs in sorted(changes.items())],
            unresolved=unresolved, dry_run=self.dry_run,
        )
        if not new_files:
            return self._block(recorded, decision, NO_WORKFLOW, now, event="nothing_to_rewrite", error=NO_WORKFLOW)
        if self.dry_run:
            return self._block(replace(recorded, dry_run=True), decision, DRY_RUN, now, event="dry_run",
                               extra={"title": title, "body": body, "files": counts})
        branch = rollback_text.ROLLBACK_BRANCH.format(pool=pool.name)
        pr = self._existing_pull(client, repo, branch)
        if pr is None:
            self._reset_branch(client, repo, branch, base_sha)
            message = rollback_text.commit_message(pool.name, pool.fallback, decision)
            commit = client.commit_files(repo, branch=branch, files=new_files, message=message, parent=base_sha)
            recorded = replace(recorded, commit_sha=commit.sha)
            pr = self._create_pull(client, repo, title=title, head=branch, base=base, body=body)
        client.add_labels(repo, pr.number, [rollback_text.LABEL])
        log.info("rollback PR open", extra={"pool": pool.name, "repo": repo, "status": pr.number})
        opened = states.save(
            self.redis,
            replace(recorded, state=states.PR_OPEN, pr_url=pr.html_url, pr_number=pr.number, branch=branch,
                    opened_at=now, last_comment_at=now, pr_author=pr.user_login, trigger_summary=None,
                    reason=decision.reason),
            event="pr_opened", now=now,
        )
        self._notify(notices.ROLLBACK, opened,
                     f"runnerguard opened a rollback pull request because {rollback_text.plain(decision.reason)}.",
                     evidence={"rate": decision.rate or 0.0, "failed": decision.failed, "finished": decision.finished,
                               "window_seconds": decision.window_seconds, "threshold": decision.threshold,
                               "trigger": decision.trigger, "reason": decision.reason})
        return opened

    def _rewrite(self, client: InstallationClient, repo: str, sha: str, pool: Pool
                 ) -> tuple[dict[str, str], dict[str, list[Change]], list[dict[str, Any]]]:
        tree = client.get_tree(repo, sha, recursive=True)
        new_files: dict[str, str] = {}
        changes: dict[str, list[Change]] = {}
        unresolved: list[dict[str, Any]] = []
        for entry in tree.entries:
            if entry.type != "blob" or not is_workflow_path(entry.path):
                continue
            text = client.get_contents(repo, entry.path, ref=sha).text
            try:
                result = rewrite_runs_on(text, can_take=pool.can_take, fallback=pool.fallback,
                                         extra_labels_narrow=not pool.any_self_hosted)
            except WorkflowParseError as exc:
                unresolved.append({"path": entry.path, "job": "-", "line": 0, "reason": f"not readable YAML: {exc}"})
                continue
            unresolved += [{"path": entry.path, **u.to_dict()} for u in result.unresolved]
            if result.changes:
                new_files[entry.path] = result.text
                changes[entry.path] = list(result.changes)
        return new_files, changes, unresolved

    @staticmethod
    def _existing_pull(client: InstallationClient, repo: str, branch: str) -> PullRequest | None:
        owner = repo.split("/", 1)[0]
        pulls = client.list_pulls(repo, state="open", head=f"{owner}:{branch}")
        return pulls[0] if pulls else None

    @staticmethod
    def _reset_branch(client: InstallationClient, repo: str, branch: str, sha: str) -> None:
        """Our branch, at the default branch's head: created, or reset if an old rollback left it behind."""
        if not branch.startswith("runnerguard/"):
            raise RollbackError(f"refusing to move {branch!r}: runnerguard only writes its own branches")
        try:
            client.create_ref(repo, f"refs/heads/{branch}", sha)
        except Unprocessable as exc:
            if not exc.already_exists:
                raise
            client.update_ref(repo, f"heads/{branch}", sha, force=True)

    def _create_pull(self, client: InstallationClient, repo: str, *, title: str, head: str, base: str,
                     body: str) -> PullRequest:
        try:
            return client.create_pull(repo, title=title, head=head, base=base, body=body)
        except Unprocessable as exc:
            # GitHub may have acted on a request whose answer we lost (a 502 after the PR was created).
            existing = self._existing_pull(client, repo, head)
            if exc.already_exists and existing is not None:
                return existing
            raise

    def _add_evidence(self, current: RollbackState, pool: Pool, decision: Decision, now: float) -> RollbackState:
        if current.dry_run or current.pr_number is None:
            return current
        if current.last_comment_at is not None and now - current.last_comment_at < COMMENT_EVERY:
            return current
        jobs = self._failing_jobs(pool, decision, now)
        self._client(current.repo).create_issue_comment(
            current.repo, current.pr_number,
            rollback_text.evidence_comment(pool.name, decision, jobs, format_time(now) or ""),
        )
        return states.save(self.redis, replace(current, last_comment_at=now, reason=decision.reason),
                           event="evidence", now=now)

    # --- following the PRs ---------------------------------------------------------------------------------------

    def pull_closed(self, pool_name: str, repo: str, *, head_ref: str, merged: bool) -> RollbackState | None:
        """A rollback or restore PR was merged or closed (a `pull_request` event, or seen by the sweep)."""
        current = states.load(self.redis, pool_name, repo)
        now = self.clock()
        if head_ref == rollback_text.ROLLBACK_BRANCH.format(pool=pool_name) and current.state == states.PR_OPEN:
            if merged:
                merged_state = states.save(self.redis, replace(current, state=states.ROLLED_BACK), event="merged",
                                           now=now)
                self._notify(notices.ROLLBACK, merged_state, f"{pool_name}: rollback merged in {repo}")
                return merged_state
            return states.save(self.redis, replace(current, state=states.HEALTHY, closed_at=now),
                               event="closed_unmerged", now=now)
        if head_ref == rollback_text.RESTORE_BRANCH.format(pool=pool_name) and current.state == states.RESTORING:
            if merged:
                restored = states.save(self.redis, replace(current, state=states.HEALTHY, closed_at=None,
                                                           pr_url=None, pr_number=None), event="restored", now=now)
                self._notify(notices.HEALTHY, restored, f"{pool_name}: restored in {repo}", resolved=True)
                return restored
            return states.save(self.redis, replace(current, state=states.ROLLED_BACK), event="restore_closed",
                               now=now)
        return None

    def check_open_pulls(self) -> list[RollbackState]:
        """The sweep's half of following PRs: events can be lost, GitHub's PR state cannot."""
        changed = []
        for current in states.list_states(self.redis):
            number = (current.pr_number if current.state == states.PR_OPEN
                      else current.restore_pr_number if current.state == states.RESTORING else None)
            if number is None or current.dry_run:
                continue
            pr = self._client(current.repo).get_pull(current.repo, number)
            if pr.state == "closed":
                updated = self.pull_closed(current.pool, current.repo, head_ref=pr.head_ref, merged=pr.merged)
                if updated is not None:
                    changed.append(updated)
        return changed

    # --- restoring ------------------------------------------------------------------------------------------------

    def restore(self, pool: Pool, repo: str) -> RollbackState:
        """Open the reverse PR: put back exactly the rollback's runs-on values, even if the files changed since."""
        lock = states.lock(self.redis, pool.name, repo, timeout=LOCK_TIMEOUT, blocking_timeout=30)
        if not lock.acquire():
            raise TimeoutError(f"rollback of {pool.name} in {repo} is locked by another worker")
        try:
            return self._restore_locked(pool, repo)
        finally:
            try:
                lock.release()
            except LockError:
                pass

    def _restore_locked(self, pool: Pool, repo: str) -> RollbackState:
        current = states.load(self.redis, pool.name, repo)
        now = self.clock()
        if current.state == states.PR_OPEN:
            if current.pr_number is not None and not current.dry_run:
                self._client(repo).update_pull(repo, current.pr_number, state="closed")
            return states.save(self.redis, replace(current, state=states.HEALTHY, closed_at=None),
                               event="withdrawn", now=now)
        if current.state != states.ROLLED_BACK:
            raise RollbackError(f"{pool.name} in {repo} is {current.state}: there is no rollback to restore")
        client = self._client(repo)
        base = client.get_repo(repo).default_branch
        base_sha = client.get_branch_sha(repo, base)
        new_files: dict[str, str] = {}
        counts: dict[str, int] = {}
        not_reverted: list[dict[str, Any]] = []
        for item in current.changes:
            path = item["path"]
            try:
                text = client.get_contents(repo, path, ref=base_sha).text
            except NotFound:
                not_reverted.append({"path": path, "job": "-", "reason": "the file no longer exists"})
                continue
            result = revert_runs_on(text, [Change.from_dict(c) for c in item["changes"]])
            not_reverted += [{"path": path, "job": n.change.job, "reason": n.reason} for n in result.not_reverted]
            if result.reverted:
                new_files[path] = result.text
                counts[path] = len(result.reverted)
        if not new_files:
            raise RollbackError("none of the rollback's runs-on values are still in place to restore")
        branch = rollback_text.RESTORE_BRANCH.format(pool=pool.name)
        pr = self._existing_pull(client, repo, branch)
        if pr is None:
            self._reset_branch(client, repo, branch, base_sha)
            client.commit_files(repo, branch=branch, files=new_files, parent=base_sha,
                                message=rollback_text.RESTORE_COMMIT_MESSAGE.format(pool=pool.name))
            pr = self._create_pull(client, repo, title=rollback_text.RESTORE_TITLE.format(pool=pool.name),
                                   head=branch, base=base,
                                   body=rollback_text.restore_body(pool.name, current.pr_url, counts, not_reverted))
        client.add_labels(repo, pr.number, [rollback_text.RESTORE_LABEL])
        restoring = states.save(self.redis, replace(current, state=states.RESTORING, restore_pr_url=pr.html_url,
                                                    restore_pr_number=pr.number,
                                                    pr_author=pr.user_login or current.pr_author),
                                event="restore_opened", now=now)
        self._notify(notices.RESTORE, restoring, f"{pool.name}: restore PR opened in {repo}")
        return restoring
