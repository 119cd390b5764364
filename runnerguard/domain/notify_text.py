"""What a notification says, in a person's words: headlines per event, evidence lines, and the escaping each channel
needs so that a payload string (a job name, a repository, a reason) never becomes a mention, a link or markup."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from runnerguard.domain.notices import BLOCKED, CLEANUP, HEALTHY, HOST, RESTORE, ROLLBACK, WATCHDOG, Notice
from runnerguard.domain.rules import human_duration
from runnerguard.domain.timeline import format_time

# Headlines by (event, state); the event's own line when the state has none. Placeholders: pool, repo, host, state.
HEADLINES: dict[tuple[str, str], str] = {
    (ROLLBACK, "pr_open"): "Pool {pool} is failing: runnerguard opened a rollback pull request in {repo}",
    (ROLLBACK, "dry_run"): "Pool {pool} is failing: runnerguard would roll back {repo} (dry run)",
    (ROLLBACK, "rolled_back"): "The rollback of pool {pool} in {repo} was merged: its jobs run on the fallback now",
    (BLOCKED, "blocked"): "Pool {pool} is failing, and runnerguard could not roll back {repo}",
    (HOST, "down"): "Runner host {host} is down",
    (HOST, "up"): "Runner host {host} is back up",
    (WATCHDOG, "cancelled"): "runnerguard's watchdog cancelled a stuck job of pool {pool} in {repo}",
    (WATCHDOG, "force_cancelled"): "runnerguard's watchdog force-cancelled a stuck job of pool {pool} in {repo}",
    (WATCHDOG, "rerun"): "runnerguard re-ran a job of pool {pool} in {repo} that failed because of its runner",
    (WATCHDOG, "blocked"): "runnerguard's watchdog may not act on jobs of pool {pool} in {repo}",
    (CLEANUP, "cleaned"): "Runner host {host} cleaned up its disk",
    (CLEANUP, "dry_run"): "Runner host {host} would clean up its disk (dry run)",
    (HOST, "stale"): "Runner host {host} has stopped reporting",
    (RESTORE, "restoring"): "Pool {pool} looks healthy: runnerguard opened a restore pull request in {repo}",
    (HEALTHY, "healthy"): "Pool {pool} is healthy again",
}
EVENT_HEADLINES: dict[str, str] = {
    ROLLBACK: "Pool {pool}: rollback {state} in {repo}",
    BLOCKED: "Pool {pool}: a rollback in {repo} is blocked",
    HOST: "Runner host {host}: {state}",
    WATCHDOG: "Pool {pool}: the watchdog acted on a job in {repo} ({state})",
    RESTORE: "Pool {pool}: restore {state} in {repo}",
    CLEANUP: "Runner host {host} cleaned up its disk",
    HEALTHY: "Pool {pool} is healthy again",
}
RESOLVED_PREFIX = "Resolved: "
TEST_HEADLINE = "runnerguard test message"
TEST_SUMMARY = ("This is a test from `flask --app app notify test`: runnerguard can reach this notifier. "
                "Nothing is wrong with your runners.")
TEST_NEXT_STEP = "Nothing to do."
DEFAULT_NEXT_STEP = {
    ROLLBACK: "Review and merge the rollback pull request, then look at the pool's runners.",
    BLOCKED: "Fix what blocks the rollback (named above), or move the pool's jobs by hand.",
    HOST: "Check the host: is it powered, online, and is its runner service running?",
    WATCHDOG: "Look at the job's logs and at the runner that took it.",
    RESTORE: "Merge the restore pull request once you trust the pool again.",
    CLEANUP: "Nothing to do, unless the disk fills up again soon.",
    HEALTHY: "Nothing to do.",
}
# Evidence keys people read, in the order they read them, with their labels.
EVIDENCE_LABELS: tuple[tuple[str, str], ...] = (
    ("rate", "failure rate"), ("failed", "failed jobs"), ("finished", "finished jobs"), ("threshold", "threshold"),
    ("window_seconds", "window"), ("window", "window"), ("min_jobs", "minimum jobs"), ("trigger", "trigger"),
    ("reason", "reason"), ("host", "host"), ("job_id", "job"), ("job_name", "job name"), ("runner", "runner"),
    ("last_seen", "last report"), ("freed_bytes", "freed"), ("disk", "disk"), ("waiting", "jobs waiting"),
)
MAX_EVIDENCE = 12
MAX_TEXT = 300

_MENTION_RE = re.compile(r"@")
_SCHEME_RE = re.compile(r"://")
_ISSUE_REF_RE = re.compile(r"#(?=\d)")
ZWSP = "\u200b"  # between "@" and a name, "@channel" stays text on Slack and "@someone" on GitHub


def clip(text: object, limit: int = MAX_TEXT) -> str:
    value = " ".join(str(text).split())  # newlines and tabs would let a payload start its own block
    return value if len(value) <= limit else value[: limit - 1] + "…"


def headline(notice: Notice, quote: Callable[[str], str] = str) -> str:
    """The one line that says what happened; `quote` wraps each payload value (a code span for GitHub)."""
    template = HEADLINES.get((notice.event, notice.state)) or EVENT_HEADLINES[notice.event]
    text = template.format(pool=quote(notice.pool or "-"), repo=quote(notice.repo or "-"),
                           host=quote(notice.host or "-"), state=quote(notice.state))
    return RESOLVED_PREFIX + text if notice.resolved else text


def next_step(notice: Notice) -> str:
    return notice.next_step or DEFAULT_NEXT_STEP[notice.event]


def _value(key: str, value: Any) -> str:
    if key in ("rate", "threshold") and isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.0%}"
    if key == "window_seconds" and isinstance(value, int | float) and value > 0:
        return human_duration(int(value))
    if (key in ("last_seen", "at") or key.endswith("_at")) and isinstance(value, int | float) \
            and not isinstance(value, bool):
        return format_time(float(value)) or "-"
    if key == "freed_bytes" and isinstance(value, int | float):
        return f"{value / 1e9:.1f} GB"
    return clip(value, 120)


def evidence_lines(evidence: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs, known keys first in reading order; other keys follow under their own name."""
    lines: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, label in EVIDENCE_LABELS:
        if key in evidence and evidence[key] is not None and label not in seen:
            lines.append((label, _value(key, evidence[key])))
            seen.add(label)
    known = {k for k, _ in EVIDENCE_LABELS}
    for key in sorted(k for k in evidence if k not in known and evidence[k] is not None):
        if isinstance(evidence[key], str | int | float | bool):
            lines.append((clip(key, 40).replace("_", " "), _value(key, evidence[key])))
    return lines[:MAX_EVIDENCE]


def safe_link(url: object) -> str | None:
    """A link a message may carry: http(s), no spaces, quotes, brackets or pipes that could end the link early."""
    if not isinstance(url, str) or not url.startswith(("https://", "http://")) or len(url) > 2000:
        return None
    if any(c.isspace() or c in "<>|\"'()[]`" or ord(c) < 32 for c in url):
        return None
    return url


# --- Slack mrkdwn ---------------------------------------------------------------------------------------------------


def slack_escape(text: object) -> str:
    """Slack's three control characters escaped, so `<!here>` or `<@U123>` from a payload is shown, not acted on;
    a bare @channel is broken with a zero-width space."""
    value = clip(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION_RE.sub("@" + ZWSP, value)


# --- GitHub Markdown ------------------------------------------------------------------------------------------------


def md_code(text: object) -> str:
    """A payload string as a code span: GitHub renders no mention, link or reference inside one."""
    value = clip(text).replace("`", "'")
    return f"`{value}`" if value else "`-`"


def md_prose(text: object) -> str:
    """Text from a producer shown as prose: no mention, no autolink, no issue reference, no HTML."""
    value = clip(text, 1000).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    value = _MENTION_RE.sub("@" + ZWSP, value)
    value = _SCHEME_RE.sub(":" + ZWSP + "//", value)
    return _ISSUE_REF_RE.sub("#" + ZWSP, value)
