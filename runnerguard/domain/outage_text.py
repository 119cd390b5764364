"""What an outage issue says: its title, body, the hourly comment and the closing summary (GitHub Markdown, with
every payload string in a code span or neutralised, so it neither mentions anyone nor links anywhere)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runnerguard.domain import notify_text as text
from runnerguard.domain.notices import Notice
from runnerguard.domain.notify_bodies import links
from runnerguard.domain.timeline import format_time

LABEL = "runnerguard:outage"
TEST_LABEL = "runnerguard:test"
MARKER = "<!-- runnerguard:outage pool={pool} -->"
TITLE = "runnerguard: pool {pool} is down ({cause})"
TEST_TITLE = "runnerguard: test notification (closed at once)"
TEST_BODY = ("runnerguard opened this issue to check that it may write issues here "
             "(`flask --app app notify test`), and closes it straight away. Nothing is wrong with your runners.")
MAX_ACTIONS = 30

BODY = """\
{marker}
{headline}

{summary}

### Evidence
{evidence}

{links}
### Next step
{next_step}

<sub>Opened by runnerguard at {at}. It comments here at most once an hour while the outage lasts, and closes this
issue with a summary when the pool is healthy again.</sub>
"""

COMMENT = """\
**{headline}** ({at})

{summary}

{evidence}
{links}"""

CLOSING = """\
**The pool {pool} is healthy again**: runnerguard closes this outage.

| lasted | from | to | jobs failed | jobs finished |
| --- | --- | --- | --- | --- |
| {duration} | {start} | {end} | {failed} | {finished} |

Jobs are counted from the start of the window whose failures opened this outage.

### What runnerguard did
{actions}
"""


def cause(notice: Notice) -> str:
    """A short cause for the title: the trigger's reason, else the notice's summary, else its state."""
    reason = notice.evidence.get("reason") or notice.summary or notice.state
    return text.clip(reason, 80).replace("`", "'").replace("@", "@" + text.ZWSP)


def marker(pool: str) -> str:
    return MARKER.format(pool=pool)


def title(notice: Notice) -> str:
    # A title is plain text (GitHub renders no Markdown there, and mentions in titles notify nobody); still clipped.
    return TITLE.format(pool=notice.pool or "-", cause=cause(notice))


def _evidence(notice: Notice) -> str:
    rows = text.evidence_lines(notice.evidence)
    if not rows:
        return "_none recorded_"
    return "\n".join(f"- {label}: {text.md_code(value)}" for label, value in rows)


def _links(notice: Notice) -> str:
    shown = links(notice)
    return "".join(f"- [{label}]({url})\n" for label, url in shown)


def body(notice: Notice) -> str:
    return BODY.format(marker=marker(notice.pool or "-"), headline=text.headline(notice, text.md_code),
                       summary=text.md_prose(notice.summary), evidence=_evidence(notice), links=_links(notice),
                       next_step=text.md_prose(text.next_step(notice)), at=format_time(notice.at))


def comment(notice: Notice) -> str:
    return COMMENT.format(headline=text.headline(notice, text.md_code), at=format_time(notice.at),
                          summary=text.md_prose(notice.summary), evidence=_evidence(notice), links=_links(notice))


def action_line(notice: Notice) -> dict[str, Any]:
    """What the outage log keeps of a notice (plain data; rendered safely on closing)."""
    return {"at": notice.at, "headline": text.headline(notice), "links": dict(notice.links)}


def human_span(seconds: float) -> str:
    minutes = int(max(seconds, 0) // 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min"]
    return " ".join(p for p in parts if p)


def closing(pool: str, *, started: float, ended: float, failed: int, finished: int,
            actions: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for action in actions[-MAX_ACTIONS:]:
        shown = [f"[{label}]({url})" for label, url in
                 links(Notice(event="healthy", state="-", summary="", at=0, links=action.get("links") or {}))]
        line = f"- {format_time(float(action.get('at') or 0))}: {text.md_prose(action.get('headline') or '')}"
        lines.append(line + (" (" + ", ".join(shown) + ")" if shown else ""))
    return CLOSING.format(pool=text.md_code(pool), duration=human_span(ended - started), start=format_time(started),
                          end=format_time(ended), failed=failed, finished=finished,
                          actions="\n".join(lines) or "- nothing beyond this issue")
