"""The bodies runnerguard sends: a Slack incoming-webhook message and the versioned JSON of the signed webhook."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from runnerguard.domain import notify_text as text
from runnerguard.domain.notices import Notice
from runnerguard.domain.timeline import format_time

SCHEMA = "runnerguard.notice/1"
SIGNATURE_HEADER = "X-Runnerguard-Signature-256"
DELIVERY_HEADER = "X-Runnerguard-Delivery"
EVENT_HEADER = "X-Runnerguard-Event"
TEST_EVENT = "test"
LINK_LABELS = {"pr": "Pull request", "job": "Job", "run": "Workflow run", "issue": "Issue", "dashboard": "Dashboard",
               "restore_pr": "Restore pull request"}


def signature(secret: str, body: bytes) -> str:
    """As GitHub signs its webhooks: `sha256=` and the hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does (documented in the README; the tests' receiver uses it): constant-time comparison."""
    return bool(header) and hmac.compare_digest(signature(secret, body), header or "")


def links(notice: Notice) -> list[tuple[str, str]]:
    """(label, url) of the links that are safe to show, in a stable order."""
    out = []
    for key in sorted(notice.links, key=lambda k: (k not in LINK_LABELS, k)):
        url = text.safe_link(notice.links[key])
        if url:
            out.append((LINK_LABELS.get(key, text.clip(key, 30).replace("_", " ")), url))
    return out


def sample_notice(now: float) -> Notice:
    """What `notify test` sends through the bodies (with `test=True`, which replaces its words)."""
    return Notice(event="healthy", state=TEST_EVENT, summary=text.TEST_SUMMARY, at=now)


# --- Slack ----------------------------------------------------------------------------------------------------------


def slack_body(notice: Notice, *, test: bool = False) -> dict[str, Any]:
    """`text` (the notification's fallback) plus blocks; every payload string escaped for mrkdwn."""
    head = text.TEST_HEADLINE if test else text.headline(notice, text.slack_escape)
    summary = text.TEST_SUMMARY if test else text.slack_escape(notice.summary)
    step = text.TEST_NEXT_STEP if test else text.slack_escape(text.next_step(notice))
    icon = ":white_check_mark:" if notice.resolved or test else ":rotating_light:"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{head}*"}},
    ]
    if summary:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": summary}})
    evidence = [] if test else text.evidence_lines(notice.evidence)
    if evidence:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*{text.slack_escape(label)}*\n{text.slack_escape(value)}"}
            for label, value in evidence[:10]]})  # Slack takes at most 10 fields per section
    shown = [] if test else links(notice)
    if shown:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "  ·  ".join(
            f"<{url.replace('&', '&amp;')}|{text.slack_escape(label)}>" for label, url in shown)}})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"*Next step:* {step}  ·  {format_time(notice.at) or ''}"}]})
    return {"text": head, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}


# --- the signed webhook ---------------------------------------------------------------------------------------------


def webhook_payload(notice: Notice, *, delivery_id: str, notifier: str, test: bool = False) -> dict[str, Any]:
    """Schema `runnerguard.notice/1` (README: Notifications). New keys may be added within version 1; a key is
    never removed or changed in meaning without a new version."""
    return {
        "schema": SCHEMA,
        "delivery_id": delivery_id,
        "notifier": notifier,
        "event": TEST_EVENT if test else notice.event,
        "state": TEST_EVENT if test else notice.state,
        "resolved": notice.resolved,
        "pool": notice.pool,
        "repo": notice.repo,
        "host": notice.host,
        "summary": text.TEST_SUMMARY if test else notice.summary,
        "headline": text.TEST_HEADLINE if test else text.headline(notice),
        "evidence": {} if test else dict(notice.evidence),
        "links": {} if test else {k: v for k, v in notice.links.items() if text.safe_link(v)},
        "next_step": text.TEST_NEXT_STEP if test else text.next_step(notice),
        "at": format_time(notice.at),
        "at_epoch": notice.at,
    }
