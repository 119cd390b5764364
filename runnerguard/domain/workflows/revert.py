"""Put back the runs-on values a rollback changed, in a file that may have been edited since."""

from __future__ import annotations

from collections.abc import Iterable

from yaml.nodes import Node, SequenceNode

from runnerguard.domain.workflows.model import Change, NotReverted, RevertResult, Segment, parse_where
from runnerguard.domain.workflows.source import check_parses, context_of, locate, parse, value_span

# Reasons shown in the restore PR body next to each value runnerguard did not put back.
REASON_JOB_GONE = "the job no longer exists"
REASON_VALUE_GONE = "the value the rollback changed is no longer there"
REASON_EDITED = "the value was edited after the rollback; left as it is"
REASON_BAD_RECORD = "the change record names no location runnerguard understands"
UNSAFE_EDIT = "runnerguard could not restore runs-on safely in this file ({error}); left unchanged"


def _pinned(text: str, job: Node, path: tuple[Segment, ...], context: str) -> tuple[Segment, ...] | None:
    """The path to revert at: as recorded, or moved to the list entry that still reads `context` if entries moved.

    None when the value cannot be pinned (its list changed, or several entries now read the same).
    """
    here = context_of(text, job, path)
    if not context or (here is not None and here[1] == context):
        return path
    pos = max(i for i, seg in enumerate(path) if isinstance(seg, int))  # a context is only kept for list paths
    if pos == len(path) - 1:
        return None  # the value is a list entry and the list itself changed: too easy to revert the wrong one
    siblings = locate(job, path[:pos])
    if siblings is None or not isinstance(siblings[1], SequenceNode):
        return None
    matches = [
        i
        for i in range(len(siblings[1].value))
        if (moved := context_of(text, job, (*path[:pos], i, *path[pos + 1 :]))) is not None and moved[1] == context
    ]
    return (*path[:pos], matches[0], *path[pos + 1 :]) if len(matches) == 1 else None


def revert_runs_on(text: str, changes: Iterable[Change]) -> RevertResult:
    """Undo `changes` where the value still reads exactly what the rollback wrote; report the others.

    Values are found again by job id and path, not by offset, so edits elsewhere in the file since the rollback
    do not matter. Raises WorkflowParseError when the file is no longer a workflow.
    """
    source = parse(text)
    edits: dict[tuple[int, int], str] = {}
    reverted: list[Change] = []
    skipped: list[NotReverted] = []
    for change in changes:
        try:
            path = parse_where(change.where)
        except ValueError:
            skipped.append(NotReverted(change, REASON_BAD_RECORD))
            continue
        job = source.jobs.get(change.job)
        if job is None:
            skipped.append(NotReverted(change, REASON_JOB_GONE))
            continue
        pinned = _pinned(text, job[1], path, change.context)
        found = locate(job[1], pinned) if pinned is not None else None
        # The rollback may have rewritten an anchored value itself (keeping its anchor): that one node may be shared.
        own_anchor = found is not None and change.after.lstrip().startswith("&") and found[1] is found[2][-1]
        passed = found[2][:-1] if own_anchor and found is not None else (found[2] if found is not None else ())
        if found is None or any(source.is_shared(node) for node in passed):
            skipped.append(NotReverted(change, REASON_VALUE_GONE))
            continue
        span = value_span(text, found[0], found[1])
        if text[span[0] : span[1]] != change.after and text.startswith(change.after, span[0]):
            # The rollback kept a collapsed list's comments after the new value: they are part of what it wrote.
            tail = change.after[span[1] - span[0]:]
            if tail.lstrip().startswith("#") and "\n" not in tail:
                span = (span[0], span[0] + len(change.after))
        overlaps = any(start < span[1] and span[0] < end for start, end in edits if (start, end) != span)
        if text[span[0] : span[1]] != change.after or overlaps or edits.get(span, change.before) != change.before:
            skipped.append(NotReverted(change, REASON_EDITED))
            continue
        edits[span] = change.before
        reverted.append(change)
    for (start, end), before in sorted(edits.items(), reverse=True):
        text = text[:start] + before + text[end:]
    if edits:
        check_parses(text, UNSAFE_EDIT)
    return RevertResult(text, tuple(reverted), tuple(skipped))
