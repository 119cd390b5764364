"""Workflow source as a YAML node tree with exact character spans, so edits splice text instead of re-dumping."""

from __future__ import annotations

import copy
import posixpath
import re
from dataclasses import dataclass

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from runnerguard.domain.workflows.model import Segment, WorkflowParseError

NOT_YAML = "not valid YAML: {error}"
NOT_MAPPING = "a workflow must be a YAML mapping, found {kind}"
JOBS_NOT_MAPPING = "`jobs` must be a mapping of job ids to jobs, found {kind}"

STR_TAG = "tag:yaml.org,2002:str"
_WORKFLOW_PATH = re.compile(r"\.github/workflows/[^/\\]+\.ya?ml\Z")


def is_workflow_path(path: str) -> bool:
    """`.github/workflows/x.yml|yaml` exactly: GitHub ignores subdirectories, and `..` must never sneak out."""
    if "\x00" in path or "\\" in path or path != posixpath.normpath(path):
        return False
    return bool(_WORKFLOW_PATH.match(path))


class _SpanLoader(yaml.SafeLoader):
    """Composes nodes and remembers which ones are aliases or anchored.

    PyYAML hands an alias back as the anchored node itself, marks included, so a naive splice at an alias would
    edit the anchor's text instead (and every other alias of it). Aliases become copies carrying the alias's own
    marks, and both kinds are recorded so the rewriter can refuse to touch shared values.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.alias_ids: set[int] = set()
        self.anchored_ids: set[int] = set()
        self.anchor_names: dict[int, str] = {}  # anchored node id -> its anchor's name
        self.aliases_of: dict[int, list[Node]] = {}  # anchored node id -> every alias copy of it
        self.keep: list[Node] = []  # keeps alias copies alive so their ids stay unique

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        node = super().compose_node(parent, index)
        if node is None:
            return None
        if isinstance(event, AliasEvent):
            alias = copy.copy(node)
            alias.start_mark, alias.end_mark = event.start_mark, event.end_mark
            self.alias_ids.add(id(alias))
            self.aliases_of.setdefault(id(node), []).append(alias)
            self.keep.append(alias)
            return alias
        if getattr(event, "anchor", None) is not None:
            self.anchored_ids.add(id(node))
            self.anchor_names[id(node)] = str(event.anchor)
        return node


@dataclass
class Source:
    """The text, its node tree, and the jobs mapping (job id -> (key node, job node))."""

    text: str
    jobs: dict[str, tuple[ScalarNode, Node]]
    alias_ids: set[int]
    anchored_ids: set[int]
    keep: list[Node]
    anchor_names: dict[int, str]
    aliases_of: dict[int, list[Node]]

    def is_shared(self, node: Node) -> bool:
        """This very node is an alias or carries an anchor."""
        return id(node) in self.alias_ids or id(node) in self.anchored_ids

    def shared(self, node: Node) -> bool:
        """True for an alias or an anchored node (or anything holding one): editing it would edit other places."""
        if self.is_shared(node):
            return True
        if isinstance(node, SequenceNode):
            return any(self.shared(item) for item in node.value)
        if isinstance(node, MappingNode):
            return any(self.shared(k) or self.shared(v) for k, v in node.value)
        return False

    def line_of(self, index: int) -> int:
        return self.text.count("\n", 0, index) + 1


def _kind(node: Node | None) -> str:
    if node is None:
        return "an empty document"
    return {ScalarNode: "a scalar", SequenceNode: "a list"}.get(type(node), "a mapping")


def parse(text: str) -> Source:
    loader = _SpanLoader(text)
    try:
        root = loader.get_single_node()
    except (yaml.YAMLError, RecursionError) as exc:
        raise WorkflowParseError(NOT_YAML.format(error=str(exc).replace("\n", " "))) from None
    finally:
        loader.dispose()
    if not isinstance(root, MappingNode):
        raise WorkflowParseError(NOT_MAPPING.format(kind=_kind(root)))
    jobs: dict[str, tuple[ScalarNode, Node]] = {}
    jobs_node = get(root, "jobs")
    if jobs_node is not None and not (isinstance(jobs_node, ScalarNode) and jobs_node.value == ""):
        if not isinstance(jobs_node, MappingNode):
            raise WorkflowParseError(JOBS_NOT_MAPPING.format(kind=_kind(jobs_node)))
        for key, job in jobs_node.value:
            if isinstance(key, ScalarNode):
                jobs[key.value] = (key, job)  # a later duplicate wins, as in yaml.safe_load
    return Source(text, jobs, loader.alias_ids, loader.anchored_ids, loader.keep, loader.anchor_names,
                  loader.aliases_of)


def check_parses(text: str, message: str) -> Source:
    """Fail closed: an edit that left the file unreadable is refused rather than proposed in a PR."""
    try:
        return parse(text)
    except WorkflowParseError as exc:
        raise WorkflowParseError(message.format(error=exc)) from None


def get_pair(mapping: Node, key: str) -> tuple[ScalarNode, Node] | None:
    """The last `key: value` pair of a mapping node (a later duplicate wins, as in yaml.safe_load)."""
    found = None
    if isinstance(mapping, MappingNode):
        for k, v in mapping.value:
            if isinstance(k, ScalarNode) and k.value == key:
                found = (k, v)
    return found


def get(mapping: Node, key: str) -> Node | None:
    pair = get_pair(mapping, key)
    return pair[1] if pair else None


def end_of(text: str, node: Node) -> int:
    """Where a value's own text ends.

    The end marks of block collections and block scalars (`|`, `>`) run on over the line break and the next
    line's indentation; a splice there would glue the following key onto the value.
    """
    if isinstance(node, SequenceNode | MappingNode) and not node.flow_style and node.value:
        last = node.value[-1]
        return end_of(text, last[1] if isinstance(last, tuple) else last)
    start, end = int(node.start_mark.index), int(node.end_mark.index)
    if isinstance(node, ScalarNode) and node.style in ("|", ">"):
        return start + len(text[start:end].rstrip())
    return end


def is_block(node: Node) -> bool:
    return isinstance(node, SequenceNode | MappingNode) and not node.flow_style and bool(node.value)


def value_span(text: str, key: ScalarNode | None, value: Node) -> tuple[int, int]:
    """The text a value occupies; for a mapping value, from just after the colon so the lead can be rewritten too.

    A block list under `runs-on:` starts on the next line; replacing it with a scalar means taking the newline and
    indentation before it as well, so mapping values are spliced from the colon on.
    """
    end = end_of(text, value)
    if key is None:
        return int(value.start_mark.index), end
    colon = text.find(":", key.end_mark.index, value.start_mark.index + 1)
    if colon < 0 or text[key.end_mark.index : colon].strip():
        return int(value.start_mark.index), end
    return colon + 1, end


def locate(job: Node, path: tuple[Segment, ...]) -> tuple[ScalarNode | None, Node, tuple[Node, ...]] | None:
    """Follow `path` (keys and list indices) from a job node: (key node or None, value node, nodes passed through)."""
    node: Node = job
    key: ScalarNode | None = None
    trail: list[Node] = []
    for seg in path:
        if isinstance(seg, int):
            if not isinstance(node, SequenceNode) or not 0 <= seg < len(node.value):
                return None
            key, node = None, node.value[seg]
        else:
            pair = get_pair(node, seg)
            if pair is None:
                return None
            key, node = pair
        trail.append(node)
    return key, node, tuple(trail)


def context_of(text: str, job: Node, path: tuple[Segment, ...]) -> tuple[int, str] | None:
    """What pins a value inside a list: (position of the last list index in `path`, the text identifying it).

    For a value inside a list entry (`include[2].runner`) that is the entry's text; for a value that is an entry
    itself (`os[1]`) it is the whole list's. None when the path crosses no list (a job's own runs-on).
    """
    indices = [i for i, seg in enumerate(path) if isinstance(seg, int)]
    if not indices:
        return None
    pos = indices[-1]
    found = locate(job, path[: pos if pos == len(path) - 1 else pos + 1])
    if found is None:
        return None
    node = found[1]
    return pos, text[node.start_mark.index : end_of(text, node)]
