"""The github-issue notifier: one open issue per pool outage, a comment at most hourly, closed with a summary.

One issue, never two: writes are locked per pool, the issue is recorded in Redis, and when that record is missing
(a lost Redis, a worker that died between the create and the save) the open issue is found again on GitHub by its
label, its author (the App's bot) and the pool marker in its body. `create_issue` is never resent after a timeout:
the task's retry looks the issue up first.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import redis
from redis.exceptions import LockError

from config.notify_env import NotifyTarget
from runnerguard.domain import outage_text
from runnerguard.domain.notices import BLOCKED, HEALTHY, ROLLBACK, Notice
from runnerguard.errors import Permanent
from runnerguard.github import Forbidden, GitHubApp, Gone, InstallationClient, Issue, NotFound
from runnerguard.store import jobstore, notify_state
from runnerguard.store.notify_state import OutageIssue

log = logging.getLogger("runnerguard.notify")
OPENS = (ROLLBACK, BLOCKED)  # the events that open an outage issue; others comment on an open one
COMMENT_EVERY = 3600
LOCK_TIMEOUT = 120
NOT_CONFIGURED = "the GitHub App is not configured (GITHUB_APP_ID and GITHUB_PRIVATE_KEY_PATH)"


class IssueRefused(Permanent):
    """GitHub will not let the App write issues there (a missing permission, not installed, issues off)."""


def _why(exc: Exception, repo: str) -> str:
    if isinstance(exc, Forbidden):
        return (f"the App lacks the `{exc.missing_permission}` permission on {repo}" if exc.missing_permission
                else f"GitHub refused the App on {repo}: {exc.message}")
    if isinstance(exc, Gone):
        return f"issues are turned off in {repo}"
    return f"the App is not installed on {repo} (or cannot see it)"


def _client(github: GitHubApp | None, repo: str) -> InstallationClient:
    if github is None:
        raise IssueRefused(NOT_CONFIGURED)
    try:
        return github.for_repo(repo)
    except NotFound as exc:
        raise IssueRefused(_why(exc, repo)) from None


def _bot_login(github: GitHubApp) -> str | None:
    slug = github.get_app().slug
    return f"{slug}[bot]" if slug else None


def find_open(client: InstallationClient, github: GitHubApp, repo: str, pool: str) -> Issue | None:
    """The open outage issue of `pool` that the App's bot opened, if GitHub has one (oldest first: never two)."""
    found = client.list_issues(repo, state="open", labels=[outage_text.LABEL], creator=_bot_login(github))
    marker = outage_text.marker(pool)
    # The marker opens the body: a payload string quoted further down cannot make another pool's issue match.
    mine = [i for i in found if i.body and i.body.startswith(marker + "\n")]
    return min(mine, key=lambda i: i.number) if mine else None


def handle(redis_client: redis.Redis, github: GitHubApp | None, target: NotifyTarget, notice: Notice, *,
           now: float) -> str:
    """Act on one notice for one pool; returns what was done ("opened #3", "commented", "closed #3", "nothing")."""
    if not notice.pool or not target.spec.repo:
        return "nothing (the notice names no pool)"
    repo, pool = target.spec.repo, notice.pool
    lock = notify_state.issue_lock(redis_client, target.name, pool, timeout=LOCK_TIMEOUT, blocking_timeout=30)
    if not lock.acquire():
        raise TimeoutError(f"the outage issue of {pool} is locked by another worker")  # retried later
    try:
        try:
            return _handle_locked(redis_client, github, target.name, repo, notice, now=now)
        except (Forbidden, NotFound, Gone) as exc:
            raise IssueRefused(_why(exc, repo)) from None
    finally:
        try:
            lock.release()
        except LockError:
            pass  # expired while we worked: the next holder starts from what is recorded


def _handle_locked(redis_client: redis.Redis, github: GitHubApp | None, name: str, repo: str, notice: Notice, *,
                   now: float) -> str:
    pool = notice.pool or "-"
    if github is None:
        raise IssueRefused(NOT_CONFIGURED)
    current = notify_state.load_issue(redis_client, name, pool)
    client = _client(github, repo)
    if current is None:
        found = find_open(client, github, repo, pool)
        if found is not None:
            opened = found.created_at.timestamp() if found.created_at else now
            # Its last activity stands for the last comment: found again, it still gets at most one an hour.
            touched = found.updated_at.timestamp() if found.updated_at else opened
            current = OutageIssue(repo=repo, number=found.number, url=found.html_url, opened_at=opened,
                                  last_comment_at=touched,
                                  evidence=dict(notice.evidence) if notice.event in OPENS else {})
            notify_state.save_issue(redis_client, name, pool, current)
            log.info("outage issue found again", extra={"pool": pool, "repo": repo, "status": found.number})
    elif notice.event in OPENS and client.get_issue(repo, current.number).state == "closed":
        # A person closed it while runnerguard still counted the outage open: this one is a new outage.
        notify_state.forget_issue(redis_client, name, pool)
        current = None
    if notice.event == HEALTHY:
        return _close(redis_client, client, name=name, pool=pool, current=current, notice=notice, now=now)
    if current is None and notice.event in OPENS and not notice.resolved:
        # Sent once (resend=False): after a timeout this raises, and the retry finds the issue if GitHub made it.
        issue = client.create_issue(repo, title=outage_text.title(notice), body=outage_text.body(notice),
                                    labels=[outage_text.LABEL])
        notify_state.save_issue(redis_client, name, pool, OutageIssue(
            repo=repo, number=issue.number, url=issue.html_url, opened_at=now, last_comment_at=now,
            evidence=dict(notice.evidence), actions=[outage_text.action_line(notice)]))
        return f"opened issue #{issue.number}"
    return _comment(redis_client, client, name=name, pool=pool, current=current, notice=notice, now=now)


def _comment(redis_client: redis.Redis, client: InstallationClient, *, name: str, pool: str,
             current: OutageIssue | None, notice: Notice, now: float) -> str:
    if current is None:
        return "nothing (no outage issue is open)"
    current = replace(current, actions=[*current.actions, outage_text.action_line(notice)][-outage_text.MAX_ACTIONS:])
    if now - current.last_comment_at < COMMENT_EVERY:
        notify_state.save_issue(redis_client, name, pool, current)
        return f"noted on issue #{current.number} (commented less than an hour ago)"
    client.create_issue_comment(current.repo, current.number, outage_text.comment(notice))
    notify_state.save_issue(redis_client, name, pool, replace(current, last_comment_at=now))
    return f"commented on issue #{current.number}"


def note(redis_client: redis.Redis, target: NotifyTarget, notice: Notice) -> None:
    """A notice the cooldown held back still goes into the outage's log (the closing summary lists it)."""
    if not notice.pool:
        return
    current = notify_state.load_issue(redis_client, target.name, notice.pool)
    if current is not None:
        actions = [*current.actions, outage_text.action_line(notice)][-outage_text.MAX_ACTIONS:]
        notify_state.save_issue(redis_client, target.name, notice.pool, replace(current, actions=actions))


def _close(redis_client: redis.Redis, client: InstallationClient, *, name: str, pool: str,
           current: OutageIssue | None, notice: Notice, now: float) -> str:
    if current is None:
        return "nothing (no outage issue is open)"
    # From the start of the window whose failures opened the outage, so those count too, to now.
    window = current.evidence.get("window_seconds")
    since = current.opened_at - (float(window) if isinstance(window, int | float) else 0.0)
    finished, failed = jobstore.window_counts(redis_client, pool, since)
    summary = outage_text.closing(pool, started=current.opened_at, ended=now, failed=failed, finished=finished,
                                  actions=[*current.actions, outage_text.action_line(notice)])
    client.create_issue_comment(current.repo, current.number, summary)
    client.update_issue(current.repo, current.number, state="closed", state_reason="completed")
    notify_state.forget_issue(redis_client, name, pool)
    return f"closed issue #{current.number}"


def send_test(github: GitHubApp | None, target: NotifyTarget) -> str:
    """Open and close at once a test issue: proves the App may write issues in the configured repository."""
    repo = target.spec.repo or "-"
    client = _client(github, repo)
    try:
        issue = client.create_issue(repo, title=outage_text.TEST_TITLE, body=outage_text.TEST_BODY,
                                    labels=[outage_text.TEST_LABEL])
        client.update_issue(repo, issue.number, state="closed", state_reason="completed")
    except (Forbidden, NotFound, Gone) as exc:
        raise IssueRefused(_why(exc, repo)) from None
    return f"opened and closed test issue #{issue.number} in {repo}"
