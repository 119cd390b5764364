"""What a rollback pull request says: titles, bodies and comments, as reviewable constants and pure functions."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from runnerguard.domain import causes
from runnerguard.domain.rules import FAILURE_RATE, STUCK_QUEUE, Decision, human_duration

LABEL = "runnerguard:rollback"
RESTORE_LABEL = "runnerguard:restore"
ROLLBACK_BRANCH = "runnerguard/rollback/{pool}"
RESTORE_BRANCH = "runnerguard/restore/{pool}"
COMMIT_MESSAGE = "Roll back {pool} to {fallback}\n\nrunnerguard: {reason}."
RESTORE_COMMIT_MESSAGE = "Restore {pool}: run its jobs on self-hosted runners again"
TITLE = "Roll back {pool} to {fallback}: {reason}"
RESTORE_TITLE = "Restore {pool}: move jobs back to its self-hosted runners"
MAX_JOBS_LISTED = 20
# A word joiner after "@" and inside "://": GitHub then neither mentions the name nor links the address, and the
# text still reads the same (issue #14: a workflow named "CI @octocat https://evil.example/2").
JOINER = "\u2060"
JOB_URL = re.compile(r"^https://[A-Za-z0-9.-]{1,253}(?::\d{1,5})?/([A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100})"
                     r"/actions/runs/\d{1,20}/job/\d{1,20}$")
NEEDS_A_PERSON = "### Needs a person\nThese `runs-on` values could not be resolved statically and were left alone:"

BODY = """\
runnerguard moved the jobs that the **{pool}** runner pool would take to `{fallback}`, because {reason}.
{summary}
### Evidence
| window | finished | failed | rate | threshold | minimum jobs |
| --- | --- | --- | --- | --- | --- |
| {window} | {finished} | {failed} | {rate} | {threshold} | {min_jobs} |

{jobs}

### What changed
Only `runs-on` values (and the matrix cells that feed them) changed; comments, quoting and layout are kept.

{files}
{unresolved}
### How to restore
Once the pool is healthy again, ask runnerguard for the reverse pull request:
`flask --app app rollback restore {pool} --repo {repo}`, or `POST /api/rollbacks/{pool}/restore`
with `{{"repo": "{repo}"}}`.
It reverts exactly this pull request's `runs-on` changes, even if the files changed since.

<sub>Opened by runnerguard ({trigger} trigger). Merging it is your call; closing it unmerged pauses new rollbacks of
this pool for the cooldown.</sub>
"""

EVIDENCE_COMMENT = """\
runnerguard: the **{pool}** pool is still failing: {reason} (as of {when}).

{jobs}
"""

RESTORE_BODY = """\
runnerguard puts back the `runs-on` values that the rollback in {rollback} changed, so the **{pool}** pool's jobs
run on its self-hosted runners again.

{files}
{not_reverted}
"""


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def plain(text: str) -> str:
    """Text for a title or a commit message: one line, no mention, no autolink."""
    flat = " ".join(text.split())
    return flat.replace("@", "@" + JOINER).replace("://", ":" + JOINER + "//").replace("www.", "www" + JOINER + ".")


def title(pool: str, fallback: str, decision: Decision) -> str:
    return plain(TITLE.format(pool=pool, fallback=fallback, reason=decision.reason))


def commit_message(pool: str, fallback: str, decision: Decision) -> str:
    return COMMIT_MESSAGE.format(pool=pool, fallback=fallback, reason=plain(decision.reason))


def trigger_summary(decision: Decision) -> str:
    """What fired, as `rollback list` says it: "failing, 75% of 8 jobs in 24h"."""
    if decision.trigger == FAILURE_RATE:
        rate = decision.rate or 0.0
        return f"failing, {rate:.0%} of {decision.finished} jobs in {human_duration(decision.window_seconds)}"
    if decision.trigger == STUCK_QUEUE:
        return f"stuck, {decision.reason}"
    return plain(decision.reason)


def cause_summary(jobs: Sequence[Mapping[str, Any]]) -> str:
    """"9 of 13 failures were the runner's: lost communication 5, set-up 4" (empty with no failure listed)."""
    return plain(causes.summarize(jobs).line())


def _link(job: Mapping[str, Any], name: str) -> str:
    """A link only to the job's own page on GitHub: the payload's html_url is data, not a place to send people."""
    url = str(job.get("html_url") or "")
    match = JOB_URL.match(url)
    if match is None or match.group(1).lower() != str(job.get("repo") or "").lower():
        return name
    return f"[{name}]({url})"


def jobs_table(jobs: Sequence[Mapping[str, Any]]) -> str:
    if not jobs:
        return "_No failing job to list._"
    rows = ["| job | workflow | runner | conclusion | cause | completed |", "| --- | --- | --- | --- | --- | --- |"]
    for job in jobs[:MAX_JOBS_LISTED]:
        name = _md(str(job.get("name") or job.get("job_id")))
        cause = job.get("failure_cause")
        cause_text = f"{cause}: {_md(str(job.get('failure_evidence') or ''))}" if cause else "-"
        rows.append(f"| {_link(job, name)} | {_md(str(job.get('workflow') or ''))} "
                    f"| {_md(str(job.get('runner_name') or '-'))} | {_md(str(job.get('conclusion')))} "
                    f"| {cause_text} | {job.get('completed_at') or ''} |")
    if len(jobs) > MAX_JOBS_LISTED:
        rows.append(f"\n…and {len(jobs) - MAX_JOBS_LISTED} more.")
    return "\n".join(rows)


def _md(text: str) -> str:
    """Payload text (job names, workflow names) is attacker-controlled on forks: no markdown, HTML, mention or link."""
    escaped = "".join(f"\\{c}" if c in "\\`*_[]()<>|#!~" else c for c in text.replace("\n", " ")[:120])
    return plain(escaped)


def body(*, pool: str, repo: str, fallback: str, decision: Decision, jobs: Sequence[Mapping[str, Any]],
         files: Mapping[str, int], unresolved: Sequence[Mapping[str, Any]],
         counted: Sequence[Mapping[str, Any]] | None = None) -> str:
    """`jobs` are listed (the most recent first); `counted` (default: `jobs`) are the failures the summary counts."""
    summary = cause_summary(jobs if counted is None else counted)
    file_lines = "\n".join(f"- `{path}`: {count} value(s)" for path, count in sorted(files.items()))
    unresolved_text = ""
    if unresolved:
        lines = "\n".join(
            f"- `{u['path']}` job `{_md(str(u['job']))}` (line {u['line']}): {_md(str(u['reason']))}"
            for u in unresolved
        )
        unresolved_text = f"\n{NEEDS_A_PERSON}\n{lines}\n"
    return BODY.format(
        pool=pool, repo=repo, fallback=fallback, reason=plain(decision.reason),
        summary=f"\n{summary}.\n" if summary else "", window=human_duration(decision.window_seconds)
        if decision.window_seconds else "-", finished=decision.finished, failed=decision.failed,
        rate=_percent(decision.rate), threshold=_percent(decision.threshold) if decision.threshold else "-",
        min_jobs=decision.min_jobs or "-", jobs=jobs_table(jobs), files=file_lines, unresolved=unresolved_text,
        trigger=decision.trigger,
    )


def evidence_comment(pool: str, decision: Decision, jobs: Sequence[Mapping[str, Any]], when: str) -> str:
    return EVIDENCE_COMMENT.format(pool=pool, reason=plain(decision.reason), when=when, jobs=jobs_table(jobs))


def restore_body(pool: str, rollback_url: str | None, files: Mapping[str, int],
                 not_reverted: Sequence[Mapping[str, Any]]) -> str:
    file_lines = "\n".join(f"- `{path}`: {count} value(s)" for path, count in sorted(files.items()))
    skipped = ""
    if not_reverted:
        skipped = "### Left as they are\n" + "\n".join(
            f"- `{n['path']}` job `{_md(str(n['job']))}`: {_md(str(n['reason']))}" for n in not_reverted)
    return RESTORE_BODY.format(rollback=rollback_url or "the rollback", pool=pool, files=file_lines,
                               not_reverted=skipped)
