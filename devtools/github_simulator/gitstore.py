"""Git objects as git stores them (blob, tree, commit with real SHA-1s), and the ref operations on them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

MODE_FILE = "100644"
MODE_EXEC = "100755"
MODE_TREE = "040000"


@dataclass(frozen=True)
class Entry:
    name: str
    mode: str
    type: str  # "blob" | "tree"
    sha: str


@dataclass(frozen=True)
class CommitObject:
    sha: str
    tree: str
    parents: tuple[str, ...]
    message: str
    author_name: str
    author_email: str
    timestamp: int


class MergeConflict(Exception):
    """Both sides changed the same path differently."""


def _hash(kind: str, body: bytes) -> str:
    return hashlib.sha1(f"{kind} {len(body)}\0".encode() + body, usedforsecurity=False).hexdigest()


@dataclass
class ObjectStore:
    """The object database of one repository."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    trees: dict[str, tuple[Entry, ...]] = field(default_factory=dict)
    commits: dict[str, CommitObject] = field(default_factory=dict)

    def put_blob(self, data: bytes) -> str:
        sha = _hash("blob", data)
        self.blobs[sha] = data
        return sha

    def put_tree(self, entries: list[Entry]) -> str:
        # git sorts entries by name, with a tree sorting as if its name ended in "/".
        ordered = tuple(sorted(entries, key=lambda e: e.name + ("/" if e.type == "tree" else "")))
        body = b"".join(
            f"{e.mode.lstrip('0')} {e.name}\0".encode() + bytes.fromhex(e.sha) for e in ordered
        )
        sha = _hash("tree", body)
        self.trees[sha] = ordered
        return sha

    def put_commit(self, tree: str, parents: list[str], message: str, *, name: str, email: str, timestamp: int
                   ) -> CommitObject:
        ident = f"{name} <{email}> {timestamp} +0000"
        lines = [f"tree {tree}", *(f"parent {p}" for p in parents), f"author {ident}", f"committer {ident}", ""]
        lines.append(message if message.endswith("\n") else message + "\n")  # git ends the message with a newline
        sha = _hash("commit", "\n".join(lines).encode())
        commit = CommitObject(sha, tree, tuple(parents), message, name, email, timestamp)
        self.commits[sha] = commit
        return commit

    def kind(self, sha: str) -> str | None:
        for kind, table in (("blob", self.blobs), ("tree", self.trees), ("commit", self.commits)):
            if sha in table:
                return kind
        return None

    def tree_from_files(self, files: Mapping[str, tuple[str, str]]) -> str:
        """Build nested trees from {path: (mode, blob sha)}."""
        top: dict[str, tuple[str, str]] = {}
        subdirs: dict[str, dict[str, tuple[str, str]]] = {}
        for path, (mode, sha) in files.items():
            head, sep, rest = path.partition("/")
            if sep:
                subdirs.setdefault(head, {})[rest] = (mode, sha)
            else:
                top[head] = (mode, sha)
        entries = [Entry(name, mode, "blob", sha) for name, (mode, sha) in top.items()]
        entries += [Entry(name, MODE_TREE, "tree", self.tree_from_files(sub)) for name, sub in subdirs.items()]
        return self.put_tree(entries)

    def flatten(self, tree_sha: str, prefix: str = "") -> dict[str, tuple[str, str]]:
        """{path: (mode, blob sha)} of every file under a tree."""
        out: dict[str, tuple[str, str]] = {}
        for entry in self.trees[tree_sha]:
            path = prefix + entry.name
            if entry.type == "tree":
                out |= self.flatten(entry.sha, path + "/")
            else:
                out[path] = (entry.mode, entry.sha)
        return out

    def walk(self, tree_sha: str, *, recursive: bool, prefix: str = "") -> list[tuple[str, Entry]]:
        """(path, entry) pairs in git's order, trees before their contents, like `git ls-tree [-r -t]`."""
        out: list[tuple[str, Entry]] = []
        for entry in self.trees[tree_sha]:
            out.append((prefix + entry.name, entry))
            if recursive and entry.type == "tree":
                out += self.walk(entry.sha, recursive=True, prefix=prefix + entry.name + "/")
        return out

    def files_at(self, commit_sha: str) -> dict[str, bytes]:
        return {p: self.blobs[s] for p, (_, s) in self.flatten(self.commits[commit_sha].tree).items()}

    def ancestors(self, sha: str) -> set[str]:
        """`sha` and every commit reachable from it."""
        seen: set[str] = set()
        stack = [sha]
        while stack:
            current = stack.pop()
            if current in seen or current not in self.commits:
                continue
            seen.add(current)
            stack.extend(self.commits[current].parents)
        return seen

    def is_ancestor(self, old: str, new: str) -> bool:
        return old in self.ancestors(new)

    def merge_base(self, a: str, b: str) -> str | None:
        common = self.ancestors(a) & self.ancestors(b)
        # The newest common ancestor: one that is no other common commit's ancestor.
        for sha in common:
            if not any(sha != other and sha in self.ancestors(other) for other in common):
                return sha
        return None

    def merged_tree(self, ours: str, theirs: str, base: str | None) -> str:
        """A three-way merge of flat file maps; MergeConflict when both sides changed a path differently."""
        mine = self.flatten(self.commits[ours].tree)
        other = self.flatten(self.commits[theirs].tree)
        origin = self.flatten(self.commits[base].tree) if base else {}
        result: dict[str, tuple[str, str]] = {}
        for path in set(mine) | set(other):
            a, b, o = mine.get(path), other.get(path), origin.get(path)
            if b in (a, o):
                chosen = a
            elif a == o:
                chosen = b
            else:
                raise MergeConflict(path)
            if chosen is not None:
                result[path] = chosen
        return self.tree_from_files(result)
