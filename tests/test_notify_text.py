"""What notifications say, and that a payload string never becomes a mention, a link, a block or markup."""

from __future__ import annotations

import json
import re

import orjson

from runnerguard.domain import notify_bodies, notify_text, outage_text
from runnerguard.domain.notices import Notice

HOSTILE = "<!channel> @channel <!here> <@U123|boss> & @octocat see https://evil.example/x #12 `code` </sub><!-- x"


def hostile_notice(**kw: object) -> Notice:
    fields: dict[str, object] = {
        "event": "watchdog", "state": "cancelled", "pool": "gpu", "repo": "octo/app", "at": 1_790_000_000.0,
        "summary": HOSTILE, "evidence": {"job_name": HOSTILE, "reason": HOSTILE, "job_id": 7},
        "links": {"job": "https://github.com/octo/app/actions/runs/1/job/7", "evil": "javascript:alert(1)",
                  "pipe": "https://ok.example/a|<!here>"},
        "next_step": HOSTILE,
    }
    return Notice(**{**fields, **kw})  # type: ignore[arg-type]


def slack_texts(body: dict[str, object]) -> list[str]:
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(body)
    return found


def test_slack_shows_hostile_text_without_acting_on_it() -> None:
    body = notify_bodies.slack_body(hostile_notice())
    texts = slack_texts(body)
    joined = "\n".join(texts)
    # Slack acts on <...> sequences only: every one left must be a link runnerguard made.
    for control in re.findall(r"<[^>]*>", joined):
        assert control.startswith("<https://github.com/octo/app/actions/runs/1/job/7|"), control
    assert "&lt;!channel&gt;" in joined and "&amp;" in joined
    assert "@channel" not in joined and "@octocat" not in joined  # broken by a zero-width space
    assert "javascript:" not in joined and "ok.example" not in joined  # unsafe links are dropped
    assert body["unfurl_links"] is False


def test_payload_newlines_cannot_start_a_block_or_a_heading() -> None:
    notice = hostile_notice(summary="line one\n### Heading\n\n- item\n<@U1>")
    comment = outage_text.comment(notice)
    assert "\n### Heading" not in comment and "\n- item" not in comment
    assert "line one ### Heading - item &lt;@\u200bU1&gt;" in comment


def test_issue_text_neither_mentions_nor_links() -> None:
    notice = hostile_notice(event="rollback", state="pr_open")
    body = outage_text.body(notice)
    outside_code = re.sub(r"`[^`\n]*`", "", body)
    for line in outside_code.splitlines():
        if line.startswith("- [") or line == outage_text.marker("gpu"):
            continue  # runnerguard's own links and marker
        assert not re.search(r"@[A-Za-z]", line), line
        assert "://" not in line and not re.search(r"#\d", line) and "<!--" not in line and "<@" not in line, line
    evidence = [line for line in body.splitlines() if line.startswith("- job name:")]
    assert evidence == ["- job name: `" + notify_text.clip(HOSTILE).replace("`", "'") + "`"]
    assert "[Job](https://github.com/octo/app/actions/runs/1/job/7)" in body
    assert "javascript:" not in body and "ok.example" not in body
    title = outage_text.title(Notice(event="rollback", state="pr_open", pool="gpu", summary="", at=0,
                                     evidence={"reason": "@octocat look"}))
    assert title == "runnerguard: pool gpu is down (@\u200boctocat look)"


def test_webhook_signature_is_githubs_scheme_and_fails_on_any_change() -> None:
    body = orjson.dumps(notify_bodies.webhook_payload(hostile_notice(), delivery_id="d-1", notifier="ops"))
    header = notify_bodies.signature("s" * 20, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert notify_bodies.verify("s" * 20, body, header)
    assert not notify_bodies.verify("s" * 20, body + b" ", header)
    assert not notify_bodies.verify("t" * 20, body, header)
    assert not notify_bodies.verify("s" * 20, body, None)
    assert not notify_bodies.verify("s" * 20, body, header.upper())


def test_webhook_schema_carries_every_documented_key() -> None:
    payload = notify_bodies.webhook_payload(hostile_notice(), delivery_id="d-1", notifier="ops")
    assert set(payload) == {"schema", "delivery_id", "notifier", "event", "state", "resolved", "pool", "repo", "host",
                            "summary", "headline", "evidence", "links", "next_step", "at", "at_epoch"}
    assert payload["schema"] == "runnerguard.notice/1" and payload["at"] == "2026-09-21T14:13:20Z"
    assert payload["links"] == {"job": "https://github.com/octo/app/actions/runs/1/job/7"}
    assert json.loads(orjson.dumps(payload))["summary"] == HOSTILE  # JSON carries the text as is: the receiver's
    test = notify_bodies.webhook_payload(hostile_notice(), delivery_id="d-2", notifier="ops", test=True)
    assert (test["event"], test["evidence"], test["links"]) == ("test", {}, {})


def test_every_event_has_words_and_a_next_step() -> None:
    for event in ("rollback", "blocked", "host", "watchdog", "restore", "cleanup", "healthy"):
        notice = Notice(event=event, state="whatever", pool="gpu", host="box-1", repo="o/r", summary="", at=0)
        assert notify_text.headline(notice) and notify_text.next_step(notice)
    down = Notice(event="host", state="down", host="box-1", summary="", at=0, evidence={"last_seen": 0})
    assert notify_text.headline(down) == "Runner host box-1 is down"
    assert ("last report", "1970-01-01T00:00:00Z") in notify_text.evidence_lines(down.evidence)
    up = Notice(event="host", state="up", host="box-1", summary="", at=0, resolved=True)
    assert notify_text.headline(up) == "Resolved: Runner host box-1 is back up"


def test_the_producers_notices_read_well() -> None:
    """The shapes the rollback, host and watchdog producers emit (their branches, issue #14, #13, #15)."""
    opened = Notice(event="rollback", state="pr_open", pool="gpu", repo="o/r", at=0,
                    summary="gpu: rollback PR opened in o/r: 62% of 21 jobs failed in 24h",
                    links={"pr": "https://github.com/o/r/pull/4"})
    assert outage_text.title(opened) == "runnerguard: pool gpu is down (gpu: rollback PR opened in o/r: 62% of 21 " \
        "jobs failed in 24h)"
    merged = Notice(event="rollback", state="rolled_back", pool="gpu", repo="o/r", at=0, summary="")
    assert notify_text.headline(merged).startswith("The rollback of pool gpu in o/r was merged")
    cleanup = Notice(event="cleanup", state="cleaned", host="box-1", pool="gpu", at=0, summary="freed 512 MiB",
                     evidence={"freed_bytes": 2**29, "removed": ["/a", "/b"], "dry_run": False, "at": 0})
    assert notify_text.headline(cleanup) == "Runner host box-1 cleaned up its disk"
    assert ("freed", "0.5 GB") in notify_text.evidence_lines(cleanup.evidence)
    blocked = Notice(event="watchdog", state="blocked", pool="gpu", repo="o/r", at=0, summary="")
    assert notify_text.headline(blocked) == "runnerguard's watchdog may not act on jobs of pool gpu in o/r"
    assert ("at", "1970-01-01T00:00:00Z") in notify_text.evidence_lines(cleanup.evidence)
