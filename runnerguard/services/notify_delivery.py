"""Deliver a recorded notice: fan it out to the notifiers that want it, then send it to one, once per cooldown.

Each notifier is its own task: a Slack outage delays neither the webhook nor the rollback that emitted the notice.
Every outcome is counted (`runnerguard_notify_total{notifier,result}`) and the last error kept for the dashboard.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import redis

from config import Policy
from config.notify_env import NotifyConfig, NotifyTarget
from config.notify_policy import GITHUB_ISSUE
from runnerguard.domain import notify_bodies as bodies
from runnerguard.domain.notices import BLOCKED, HEALTHY, HOST, ROLLBACK, Notice
from runnerguard.errors import Permanent, RunnerguardError, Unavailable
from runnerguard.github import GitHubApp
from runnerguard.queue import tasks
from runnerguard.services import notify_http, outage_issues
from runnerguard.store import notices, notify_state

log = logging.getLogger("runnerguard.notify")
OUTAGES = (ROLLBACK, BLOCKED, HOST)  # what a later resolved notice (healthy, host up) answers


class NotifierRefused(Permanent):
    """The notifier said no for good (a 4xx, a redirect): retrying cannot help; the answer is recorded."""


class NotifierAway(Unavailable):
    """The notifier did not answer, or answered 429 / 5xx: the task is retried with backoff."""


def send_job_id(entry_id: str, notifier: str) -> str:
    # RQ job ids take letters, digits, "_" and "-": a notifier named "ops.team" must not fail the fan-out.
    return tasks.job_id_for(entry_id, "notify", "_" + "".join(c if c.isalnum() or c in "_-" else "-" for c in notifier))


def subject_key(notice: Notice) -> str:
    return f"host:{notice.host}" if notice.event == HOST and notice.host else f"pool:{notice.subject}"


def fan_out(client: redis.Redis, policy: Policy, entry_id: str) -> list[str]:
    """Queue one delivery per notifier that wants the notice (every notifier for a resolved one: whoever heard of
    the outage hears it is over; the claim drops it for the others). Returns the notifiers' names."""
    notice = notices.load(client, entry_id)
    if notice is None:
        return []  # trimmed from the outbox: nothing left to send
    names = [spec.name for spec in policy.notifiers if spec.wants(notice.event) or notice.resolved]
    for name in names:
        job_id = send_job_id(entry_id, name)
        if not tasks.is_pending(job_id, connection=client):
            tasks.enqueue(tasks.NOTIFY_SEND, entry_id, name, connection=client, job_id=job_id)
    return names


def _with_dashboard(notice: Notice, dashboard_url: str) -> Notice:
    if not dashboard_url or "dashboard" in notice.links:
        return notice
    anchor = f"#pool-{notice.pool}" if notice.pool and notice.event != HOST else ""
    return replace(notice, links={**notice.links, "dashboard": f"{dashboard_url}/{anchor}"})


def deliver(client: redis.Redis, config: NotifyConfig, github: GitHubApp | None, entry_id: str, name: str, *,
            now: float) -> str:
    """Send one notice to one notifier (or hold it back for the cooldown); what happened, for the task's result."""
    target = config.target(name)
    notice = notices.load(client, entry_id)
    if target is None or notice is None:
        return "nothing to send (the notifier left the policy, or the notice expired)"
    if notify_state.was_sent(client, name, entry_id):
        return "already sent"  # the fan-out ran twice (a retry, a replay): one message all the same
    notice = _with_dashboard(notice, config.dashboard_url)
    outage = notice.event in OUTAGES and not notice.resolved
    claimed = notify_state.claim(client, name, entry_id, event=notice.event, subject=subject_key(notice),
                                 resolved=notice.resolved, outage=outage, cooldown=target.spec.cooldown_seconds)
    # An outage issue is closed whatever Redis remembers: after a lost Redis it is found on GitHub and closed.
    if not claimed and not (target.kind == GITHUB_ISSUE and notice.event == HEALTHY):
        notify_state.record(client, name, notify_state.SUPPRESSED, at=now, event=notice.event)
        if target.kind == GITHUB_ISSUE:
            outage_issues.note(client, target, notice)
        return "held back (cooldown, or nothing open to resolve)"
    try:
        result = _send(client, target, github, notice, entry_id, now=now)
    except Exception as exc:
        # Our own errors and GitHub's carry no secret; anything else (a bug) is shown by its type only.
        error = str(exc) if isinstance(exc, RunnerguardError) else type(exc).__name__
        notify_state.record(client, name, notify_state.ERROR, at=now, event=notice.event, error=error)
        log.warning("notification failed", extra={"status": name, "error": error[:200]})
        raise
    notify_state.mark_sent(client, name, entry_id)
    notify_state.record(client, name, notify_state.SENT, at=now, event=notice.event)
    return result


def _send(client: redis.Redis, target: NotifyTarget, github: GitHubApp | None, notice: Notice, entry_id: str, *,
          now: float) -> str:
    if target.kind == GITHUB_ISSUE:
        return outage_issues.handle(client, github, target, notice, now=now)
    answer = notify_http.send(target, notice, notice_id=entry_id)
    if answer.ok:
        return str(answer)
    if answer.retry:
        raise NotifierAway(f"{target.name}: {answer}")
    raise NotifierRefused(f"{target.name}: {answer}")


def send_test(config: NotifyConfig, github: GitHubApp | None, name: str, *, now: float) -> str:
    """The worker's half of `notify test` (github-issue notifiers: the CLI holds no GitHub client)."""
    target = config.target(name)
    if target is None:
        raise Permanent(f"no notifier named {name!r} in the policy")
    if target.kind == GITHUB_ISSUE:
        return outage_issues.send_test(github, target)
    answer = notify_http.send(target, bodies.sample_notice(now), notice_id=f"test-{now}", test=True)
    if not answer.ok:
        raise NotifierRefused(str(answer))
    return str(answer)
