"""What a rollback pull request says: titles, bodies and comments, as reviewable constants and pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runnerguard.domain.rules import Decision, human_duration

LABEL = "runnerguard:rollback"
RESTORE_LABEL = "runnerguard:restore"
ROLLBACK_BRANCH = "runnerguard/rollback/{pool}"
RESTORE_BRANCH = "runnerguard/restore/{pool}"
COMMIT_MESSAGE = "Roll back {pool} to {fallback}\n\nrunnerguard: {reason}."
RESTORE_COMMIT_MESSAGE = "Restore {pool}: run its jobs on self-hosted runners again"
TITLE = "Roll back {pool} to {fallback}: {reason}"
RESTORE_TITLE = "Restore {pool}: move jobs back to its self-hosted runners"
MAX_JOBS_LISTED = 20
NEEDS_A_PERSON = "### Needs a person\nThese `runs-on` values could not be resolved statically and were left alone:"

BODY = """\
runnerguard moved the jobs that the **{pool}** runner pool would take to `{fallback}`, because {reason}.

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


def title(pool: str, fallback: str, decision: Decision) -> str:
    return TITLE.format(pool=pool, fallback=fallback, reason=decision.reason)


def jobs_table(jobs: Sequence[Mapping[str, Any]]) -> str:
    if not jobs:
        return "_No failing job to list._"
    rows = ["| job | workflow | runner | conclusion | completed |", "| --- | --- | --- | --- | --- |"]
    for job in jobs[:MAX_JOBS_LISTED]:
        name = _md(str(job.get("name") or job.get("job_id")))
        link = f"[{name}]({job['html_url']})" if str(job.get("html_url") or "").startswith("https://") else name
        rows.append(f"| {link} | {_md(str(job.get('workflow') or ''))} | {_md(str(job.get('runner_name') or '-'))} "
                    f"| {job.get('conclusion')} | {job.get('completed_at') or ''} |")
    if len(jobs) > MAX_JOBS_LISTED:
        rows.append(f"\n…and {len(jobs) - MAX_JOBS_LISTED} more.")
    return "\n".join(rows)


def _md(text: str) -> str:
    """Payload text (job names, workflow names) is attacker-controlled on forks: no markdown or HTML from it."""
    return "".join(f"\\{c}" if c in "\\`*_[]()<>|#!~" else c for c in text.replace("\n", " "))[:120]


def body(*, pool: str, repo: str, fallback: str, decision: Decision, jobs: Sequence[Mapping[str, Any]],
         files: Mapping[str, int], unresolved: Sequence[Mapping[str, Any]]) -> str:
    file_lines = "\n".join(f"- `{path}`: {count} value(s)" for path, count in sorted(files.items()))
    unresolved_text = ""
    if unresolved:
        lines = "\n".join(
            f"- `{u['path']}` job `{_md(str(u['job']))}` (line {u['line']}): {_md(str(u['reason']))}"
            for u in unresolved
        )
        unresolved_text = f"\n{NEEDS_A_PERSON}\n{lines}\n"
    return BODY.format(
        pool=pool, repo=repo, fallback=fallback, reason=decision.reason, window=human_duration(decision.window_seconds)
        if decision.window_seconds else "-", finished=decision.finished, failed=decision.failed,
        rate=_percent(decision.rate), threshold=_percent(decision.threshold) if decision.threshold else "-",
        min_jobs=decision.min_jobs or "-", jobs=jobs_table(jobs), files=file_lines, unresolved=unresolved_text,
        trigger=decision.trigger,
    )


def evidence_comment(pool: str, decision: Decision, jobs: Sequence[Mapping[str, Any]], when: str) -> str:
    return EVIDENCE_COMMENT.format(pool=pool, reason=decision.reason, when=when, jobs=jobs_table(jobs))


def restore_body(pool: str, rollback_url: str | None, files: Mapping[str, int],
                 not_reverted: Sequence[Mapping[str, Any]]) -> str:
    file_lines = "\n".join(f"- `{path}`: {count} value(s)" for path, count in sorted(files.items()))
    skipped = ""
    if not_reverted:
        skipped = "### Left as they are\n" + "\n".join(
            f"- `{n['path']}` job `{_md(str(n['job']))}`: {_md(str(n['reason']))}" for n in not_reverted)
    return RESTORE_BODY.format(rollback=rollback_url or "the rollback", pool=pool, files=file_lines,
                               not_reverted=skipped)
