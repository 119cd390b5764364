"""Rewrite the `runs-on` of every job a pool could take to the pool's fallback, touching nothing else."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from runnerguard.domain.workflows.model import (
    RUNS_ON,
    Change,
    RewriteResult,
    Segment,
    Unresolved,
    format_where,
    parse_where,
)
from runnerguard.domain.workflows.source import (
    STR_TAG,
    Source,
    check_parses,
    context_of,
    get,
    get_pair,
    is_block,
    parse,
    value_span,
)

# Reasons shown in the PR body next to each job runnerguard left for a person.
REASON_EXPRESSION = "runs-on is computed by an expression runnerguard cannot evaluate"
REASON_MIXED = "runs-on mixes fixed labels with labels computed by an expression"
REASON_GROUP = "runs-on names a runner group without labels; runnerguard cannot tell which runners serve it"
REASON_NO_LABELS = "runs-on mapping has no `labels`"
REASON_SHARED = "runs-on uses a YAML anchor or alias; editing it would also change the other places that share it"
REASON_NOT_LABELS = "runs-on is not a label, a list of labels or a group/labels mapping"
REASON_NESTED = "runs-on holds a nested list or mapping where a label was expected"
REASON_NO_MATRIX = "runs-on refers to a matrix value the job's strategy.matrix does not define"
REASON_MATRIX_EXPRESSION = "the matrix that runs-on refers to is computed by an expression"
REASON_CELL_EXPRESSION = "a matrix value that runs-on refers to is computed by an expression"
REASON_PARTIAL = "only some matrix combinations of this runs-on are the pool's; splitting the matrix needs a person"
REASON_TOO_MANY = "runs-on refers to too many matrix combinations to judge"
REASON_JOB_NOT_MAPPING = "the job is not a mapping"
# Raised (as WorkflowParseError, so the caller skips the file) if a splice ever yields a file that no longer parses.
UNSAFE_EDIT = "runnerguard could not rewrite runs-on safely in this file ({error}); left unchanged"

# Expanding `[self-hosted, ${{ matrix.os }}, ${{ matrix.arch }}]` judges every combination; beyond this, give up.
MAX_COMBINATIONS = 1024

_MATRIX_REF = re.compile(r"\s*\$\{\{\s*matrix\.([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)\s*\}\}\s*\Z")
_SAFE_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./=+-]*\Z")

CanTake = Callable[[Sequence[str]], bool]


@dataclass(frozen=True)
class _Ref:
    """`${{ matrix.a.b }}`: a label (or list of labels) taken from the job's matrix."""

    path: tuple[str, ...]


@dataclass(frozen=True)
class _Expr:
    text: str


@dataclass(frozen=True)
class _Slot:
    """A value that may be replaced: where it sits in its job, its key (for mapping values) and its node."""

    where: tuple[Segment, ...]
    key: ScalarNode | None
    node: Node


Term = str | _Ref | _Expr


class _Unjudged(Exception):
    """Raised inside the judging helpers; becomes an Unresolved entry for the job."""

    def __init__(self, reason: str, slot: _Slot | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.slot = slot


def _scalar_term(node: ScalarNode) -> Term:
    if "${{" not in node.value:
        return str(node.value)
    match = _MATRIX_REF.match(node.value)
    return _Ref(tuple(match.group(1).split("."))) if match else _Expr(node.value)


def _terms(node: Node, *, top: bool = True) -> list[Term]:
    """The labels a runs-on value asks for, with matrix references and expressions left as terms."""
    if isinstance(node, ScalarNode):
        if top and node.style is None and node.tag != STR_TAG:
            raise _Unjudged(REASON_NOT_LABELS)  # `runs-on: 42`, `runs-on: true`, an empty `runs-on:`
        return [_scalar_term(node)]
    if isinstance(node, SequenceNode):
        if not all(isinstance(item, ScalarNode) for item in node.value):
            raise _Unjudged(REASON_NESTED)
        return [_scalar_term(item) for item in node.value]
    if not top:
        raise _Unjudged(REASON_NESTED)
    assert isinstance(node, MappingNode)
    labels = get(node, "labels")
    if labels is None:
        raise _Unjudged(REASON_GROUP if get(node, "group") is not None else REASON_NO_LABELS)
    return _terms(labels, top=False)  # a group/labels mapping is judged by its labels alone


def _scalar_text(fallback: str, style: str | None) -> str:
    """The fallback as YAML: plain when that reads back as the same string (flow-safe too), else quoted."""
    if style == "'":
        return "'" + fallback.replace("'", "''") + "'"
    if style == '"' or not _SAFE_PLAIN.match(fallback) or yaml.safe_load(fallback) != fallback:
        return json.dumps(fallback)  # a JSON string is a valid double-quoted YAML scalar
    return fallback


_COMMENT = re.compile(r"(?<![^\s])#.*")


def _comments(text: str) -> list[str]:
    """The comments inside a block value's text (`- self-hosted # must come first`), in order."""
    found = []
    for line in text.splitlines():
        match = _COMMENT.search(line)
        if match:
            found.append(match.group(0).rstrip())
    return found


class _Rewriter:
    def __init__(self, source: Source, can_take: CanTake, fallback: str, *, extra_labels_narrow: bool) -> None:
        self.src = source
        self.can_take = can_take
        self.fallback = fallback
        # False for the no-policy pool ("every runner with self-hosted"): adding labels cannot make a job not its.
        self.extra_labels_narrow = extra_labels_narrow
        self.edits: dict[tuple[int, int], tuple[str, Change]] = {}
        self.unresolved: list[Unresolved] = []
        # anchored runs-on nodes whose every use is a runs-on this pool takes: rewritten once, at the anchor
        self.runs_on_uses: dict[int, list[_Slot]] = {}
        self.refused_anchors: set[int] = set()

    def note(self, job: str, slot: _Slot, reason: str) -> None:
        start = int(slot.node.start_mark.index)
        text = self.src.text[start : value_span(self.src.text, None, slot.node)[1]]
        self.unresolved.append(Unresolved(job, format_where(slot.where), self.src.line_of(start), text, reason))

    def is_fallback(self, labels: Sequence[str]) -> bool:
        return [label.lower() for label in labels] == [self.fallback.lower()]

    def takes(self, labels: Sequence[str]) -> bool:
        return bool(labels) and not self.is_fallback(labels) and self.can_take(labels)

    def rewrite_slot(self, job: str, slot: _Slot, *, anchor: str | None = None) -> None:
        text = self.src.text
        start, end = value_span(text, slot.key, slot.node)
        # A block list or mapping starts on the next line: the scalar that replaces it goes after the colon.
        lead = " " if slot.key is not None and is_block(slot.node) else text[start : slot.node.start_mark.index]
        style = slot.node.style if isinstance(slot.node, ScalarNode) else None
        after = lead + (f"&{anchor} " if anchor else "") + _scalar_text(self.fallback, style)
        if is_block(slot.node):
            # A block list collapsed to one line would drop the comments inside it; they follow the new value.
            notes = _comments(text[int(slot.node.start_mark.index) : end])
            if notes:
                after += "  " + " ".join(notes)
        if text[start:end] != after:
            line = self.src.line_of(int(slot.node.start_mark.index))
            change = Change(job, format_where(slot.where), text[start:end], after, line)
            self.edits[(start, end)] = (after, change)

    def cells(self, job: Node, ref: _Ref, runs_on: _Slot) -> list[_Slot]:
        """Every matrix value `${{ matrix.a.b }}` can stand for: items of the `a` axis and `include` entries."""
        strategy = get(job, "strategy")
        pair = get_pair(strategy, "matrix") if strategy is not None else None
        if pair is None:
            raise _Unjudged(REASON_NO_MATRIX, runs_on)
        matrix = _Slot(("strategy", "matrix"), pair[0], pair[1])
        axis_name, *rest = ref.path
        # (slot to start from, keys to follow from there): an axis item holds the value itself, an include
        # entry holds it under the axis name.
        starts: list[tuple[_Slot, list[str]]] = []
        for name, keys in ((axis_name, rest), ("include", [axis_name, *rest])):
            sub = self.follow(matrix, [name])
            if sub is None:
                continue
            if self.src.is_shared(sub.node):
                raise _Unjudged(REASON_SHARED, sub)
            if isinstance(sub.node, SequenceNode):
                starts += [(_Slot((*sub.where, i), None, item), keys) for i, item in enumerate(sub.node.value)]
            elif isinstance(sub.node, ScalarNode) and "${{" in sub.node.value:
                raise _Unjudged(REASON_MATRIX_EXPRESSION, sub)
        found = [slot for slot in (self.follow(start, keys) for start, keys in starts) if slot is not None]
        if not found:
            raise _Unjudged(REASON_NO_MATRIX, runs_on)
        return found

    def follow(self, slot: _Slot, keys: Sequence[str]) -> _Slot | None:
        """Walk mapping keys down from `slot`; None where a key is missing (that matrix entry does not set it)."""
        for name in keys:
            if self.src.is_shared(slot.node):
                raise _Unjudged(REASON_SHARED, slot)
            if isinstance(slot.node, ScalarNode) and "${{" in slot.node.value:
                raise _Unjudged(REASON_MATRIX_EXPRESSION, slot)
            hit = get_pair(slot.node, name)
            if hit is None:
                return None
            slot = _Slot((*slot.where, name), hit[0], hit[1])
        return slot

    def cell_labels(self, slot: _Slot) -> list[str]:
        if self.src.shared(slot.node):
            raise _Unjudged(REASON_SHARED, slot)
        terms = _terms(slot.node)
        if not all(isinstance(term, str) for term in terms):
            raise _Unjudged(REASON_CELL_EXPRESSION, slot)
        return [term for term in terms if isinstance(term, str)]

    def judge_matrix(self, job_id: str, job: Node, ref: _Ref, runs_on: _Slot) -> None:
        """`runs-on: ${{ matrix.x }}`: the expression stays; each matrix value the pool could take is rewritten."""
        for cell in self.cells(job, ref, runs_on):
            try:
                labels = self.cell_labels(cell)
            except _Unjudged as exc:
                self.note(job_id, exc.slot or cell, exc.reason)
                continue
            if self.takes(labels):
                self.rewrite_slot(job_id, cell)

    def judge_shared(self, job_id: str, slot: _Slot) -> None:
        """`runs-on: &r [...]` and `runs-on: *r`: rewrite the anchored value (keeping the anchor) when every use of it
        is the runs-on of a job this pool takes; anything else stays for a person."""
        node = slot.node
        anchored = id(node) in self.src.anchored_ids
        if id(node) in self.src.alias_ids:
            target = next((a for a, copies in self.src.aliases_of.items() if any(c is node for c in copies)), None)
            if target is not None and target in self.runs_on_uses and target not in self.refused_anchors:
                return None  # rewritten (or judged) at its anchor, which YAML puts before every alias
            raise _Unjudged(REASON_SHARED)
        uses = self.runs_on_uses.get(id(node), [])
        aliases = self.src.aliases_of.get(id(node), [])
        terms = _terms(node)
        fixed = [term for term in terms if isinstance(term, str)]
        # Not when an alias of it stands somewhere else than a runs-on, it holds anchors of its own, or an expression.
        if (not anchored or any(self.src.shared(child) for child in _children(node))
                or len(uses) != len(aliases) + 1 or len(fixed) != len(terms)):
            self.refused_anchors.add(id(node))
            raise _Unjudged(REASON_SHARED)
        if self.takes(fixed):
            self.rewrite_slot(job_id, slot, anchor=self.src.anchor_names[id(node)])
        return None

    def judge(self, job_id: str, job: Node, slot: _Slot) -> None:
        if self.src.shared(slot.node):
            return self.judge_shared(job_id, slot)
        terms = _terms(slot.node)
        refs = [term for term in terms if isinstance(term, _Ref)]
        fixed = [term for term in terms if isinstance(term, str)]
        if len(terms) == 1 and refs:
            return self.judge_matrix(job_id, job, refs[0], slot)
        # Adding labels only narrows which runners match, so fixed labels the pool cannot take settle it.
        if fixed and not self.can_take(fixed):
            return None
        if any(isinstance(term, _Expr) for term in terms):
            if fixed and not self.extra_labels_narrow and self.takes(fixed):
                # `[self-hosted, linux, "${{ inputs.runner }}"]` under the pool of every self-hosted runner: the
                # fixed labels already make the job the pool's, whatever the expression adds.
                self.rewrite_slot(job_id, slot)
                return None
            raise _Unjudged(REASON_EXPRESSION if len(terms) == 1 else REASON_MIXED)
        if not refs:
            if self.takes(fixed):
                self.rewrite_slot(job_id, slot)
            return None
        # `[self-hosted, ${{ matrix.os }}]`: judge every combination; rewrite only when all are the pool's.
        choices = [[self.cell_labels(cell) for cell in self.cells(job, ref, slot)] for ref in set(refs)]
        count = 1
        for options in choices:
            count *= len(options)
        if count > MAX_COMBINATIONS:
            raise _Unjudged(REASON_TOO_MANY)
        combos = itertools.product(*choices)
        verdicts = {self.takes(fixed + [label for cell in combo for label in cell]) for combo in combos}
        if verdicts == {True}:
            self.rewrite_slot(job_id, slot)
        elif verdicts == {True, False}:
            raise _Unjudged(REASON_PARTIAL)
        return None

    @staticmethod
    def with_context(rewritten: Source, change: Change) -> Change:
        """Pin a matrix value to the rewritten text of its list entry, read from the rewritten file."""
        found = context_of(rewritten.text, rewritten.jobs[change.job][1], parse_where(change.where))
        return replace(change, context=found[1]) if found else change

    def collect_anchored_uses(self) -> None:
        """Every job's runs-on that is an anchored node or an alias of one, grouped by the anchored node."""
        for _key, job in self.src.jobs.values():
            pair = get_pair(job, RUNS_ON) if isinstance(job, MappingNode) else None
            if pair is None:
                continue
            slot = _Slot((RUNS_ON,), pair[0], pair[1])
            node = pair[1]
            if id(node) in self.src.anchored_ids:
                self.runs_on_uses.setdefault(id(node), []).append(slot)
            elif id(node) in self.src.alias_ids:
                for target, copies in self.src.aliases_of.items():
                    if any(c is node for c in copies):
                        self.runs_on_uses.setdefault(target, []).append(slot)

    def run(self) -> RewriteResult:
        self.collect_anchored_uses()
        for job_id, (job_key, job) in self.src.jobs.items():
            if not isinstance(job, MappingNode):
                if not (isinstance(job, ScalarNode) and job.value == ""):
                    self.note(job_id, _Slot((), job_key, job), REASON_JOB_NOT_MAPPING)
                continue
            pair = get_pair(job, RUNS_ON)
            if pair is None:
                continue  # a reusable-workflow call (`uses:`) has no runs-on of its own
            slot = _Slot((RUNS_ON,), pair[0], pair[1])
            try:
                self.judge(job_id, job, slot)
            except _Unjudged as exc:
                self.note(job_id, exc.slot or slot, exc.reason)
        text = self.src.text
        for (start, end), (after, _) in sorted(self.edits.items(), reverse=True):
            text = text[:start] + after + text[end:]
        changes = tuple(change for _, (_, change) in sorted(self.edits.items()))
        if changes:
            rewritten = check_parses(text, UNSAFE_EDIT)
            changes = tuple(self.with_context(rewritten, change) for change in changes)
        return RewriteResult(text, changes, tuple(self.unresolved))


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def rewrite_runs_on(text: str, *, can_take: CanTake, fallback: str, extra_labels_narrow: bool = True) -> RewriteResult:
    """Point every job `can_take` accepts at `fallback`; raises WorkflowParseError for a file that is no workflow.

    `can_take` is the pool's membership rule (`Pool.can_take`): given the labels a job asks for, could the pool's
    runners take it. Only runs-on values and the matrix values they name change; every other byte stays.
    """
    return _Rewriter(parse(text), can_take, fallback, extra_labels_narrow=extra_labels_narrow).run()
