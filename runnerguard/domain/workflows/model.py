"""Records the runs-on rewriter hands back: changes (kept for the restore PR), unresolved jobs, typed errors."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from runnerguard.errors import InvalidInput

# Where a change sits inside its job: "runs-on", or a path under the job such as "strategy.matrix.os[1]".
RUNS_ON = "runs-on"

Segment = str | int


class WorkflowParseError(InvalidInput):
    """The file is not a workflow runnerguard can edit (invalid YAML, or not a mapping of jobs)."""


@dataclass(frozen=True)
class Change:
    """One value the rollback replaced, located by job id and path so the restore works on a file edited since.

    `before` and `after` are exact source text (they may span lines, for a block list), so the restore puts the
    original back byte for byte. `line` is 1-based, in the file the change was made to, for the PR body only.
    `context` is, for a matrix value, the rewritten text of the list entry holding it (or of the whole list, when
    the value is an entry itself): a list index alone could point at a different entry once entries are added, and
    `ubuntu-latest` is too common a value to tell them apart.
    """

    job: str
    where: str
    before: str
    after: str
    line: int
    context: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Change:
        job, where, before, after, line = (data.get(k) for k in ("job", "where", "before", "after", "line"))
        context = data.get("context", "")
        if not (
            isinstance(context, str)
            and isinstance(job, str)
            and isinstance(where, str)
            and isinstance(before, str)
            and isinstance(after, str)
            and isinstance(line, int)
        ):
            raise ValueError(f"not a runs-on change record: {dict(data)!r}")
        parse_where(where)  # a record that names no path is refused now, not half-way through a restore
        return cls(job=job, where=where, before=before, after=after, line=line, context=context)


@dataclass(frozen=True)
class Unresolved:
    """A runs-on (or matrix cell) runnerguard would not judge; the PR body lists it for a person."""

    job: str
    where: str
    line: int
    text: str
    reason: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class RewriteResult:
    text: str
    changes: tuple[Change, ...]
    unresolved: tuple[Unresolved, ...]

    @property
    def changed(self) -> bool:
        return bool(self.changes)


@dataclass(frozen=True)
class NotReverted:
    """A change the restore left as it is, and why (the job or value was edited after the rollback)."""

    change: Change
    reason: str


@dataclass(frozen=True)
class RevertResult:
    text: str
    reverted: tuple[Change, ...]
    not_reverted: tuple[NotReverted, ...]


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_SEGMENT = re.compile(r'\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def format_where(path: tuple[Segment, ...]) -> str:
    """`("strategy", "matrix", "os", 1)` -> `strategy.matrix.os[1]`; odd keys go in JSON quotes: `["a.b"]`."""
    out = []
    for seg in path:
        if isinstance(seg, int):
            out.append(f"[{seg}]")
        elif _PLAIN_KEY.match(seg):
            out.append(f".{seg}")
        else:
            out.append(f"[{json.dumps(seg)}]")
    return "".join(out).removeprefix(".")


def parse_where(where: str) -> tuple[Segment, ...]:
    text = where if where.startswith("[") else "." + where
    path: list[Segment] = []
    pos = 0
    while pos < len(text):
        match = _SEGMENT.match(text, pos)
        if match is None:
            raise ValueError(f"not a runs-on location: {where!r}")
        key, index, quoted = match.groups()
        path.append(key if key is not None else int(index) if index is not None else json.loads(quoted))
        pos = match.end()
    if not path:
        raise ValueError(f"not a runs-on location: {where!r}")
    return tuple(path)
