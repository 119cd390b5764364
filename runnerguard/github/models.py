"""Typed records of the repository data runnerguard reads from GitHub, parsed strictly at the edge."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runnerguard.github.actions_models import Annotation, Step, WorkflowRun, attempt_from, steps_from
from runnerguard.github.app_models import (
    App,
    HookDelivery,
    HookDeliveryDetail,
    Installation,
    InstallationToken,
    RateLimit,
)
from runnerguard.github.errors import MalformedResponse
from runnerguard.github.issue_models import Issue
from runnerguard.github.parsing import fail, obj, opt, req, time_field


@dataclass(frozen=True)
class Repo:
    id: int
    full_name: str
    name: str
    owner: str
    default_branch: str
    private: bool
    archived: bool
    html_url: str

    @classmethod
    def from_json(cls, data: Any) -> Repo:
        d = obj(data, "repository")
        owner = obj(d.get("owner"), "repository owner")
        return cls(
            id=req(d, "id", int, "repository"),
            full_name=req(d, "full_name", str, "repository"),
            name=req(d, "name", str, "repository"),
            owner=req(owner, "login", str, "repository owner"),
            default_branch=req(d, "default_branch", str, "repository"),
            private=req(d, "private", bool, "repository"),
            archived=bool(opt(d, "archived", bool, "repository")),
            html_url=req(d, "html_url", str, "repository"),
        )


@dataclass(frozen=True)
class Ref:
    ref: str  # "refs/heads/main"
    sha: str
    object_type: str

    @classmethod
    def from_json(cls, data: Any) -> Ref:
        d = obj(data, "ref")
        target = obj(d.get("object"), "ref object")
        return cls(
            ref=req(d, "ref", str, "ref"),
            sha=req(target, "sha", str, "ref object"),
            object_type=req(target, "type", str, "ref object"),
        )


@dataclass(frozen=True)
class TreeEntry:
    path: str
    mode: str
    type: str  # "blob" | "tree" | "commit"
    sha: str
    size: int | None = None

    @classmethod
    def from_json(cls, data: Any) -> TreeEntry:
        d = obj(data, "tree entry")
        return cls(
            path=req(d, "path", str, "tree entry"),
            mode=req(d, "mode", str, "tree entry"),
            type=req(d, "type", str, "tree entry"),
            sha=req(d, "sha", str, "tree entry"),
            size=opt(d, "size", int, "tree entry"),
        )


@dataclass(frozen=True)
class Tree:
    sha: str
    entries: tuple[TreeEntry, ...]
    truncated: bool

    @classmethod
    def from_json(cls, data: Any) -> Tree:
        d = obj(data, "tree")
        return cls(
            sha=req(d, "sha", str, "tree"),
            entries=tuple(TreeEntry.from_json(e) for e in req(d, "tree", list, "tree")),
            truncated=req(d, "truncated", bool, "tree"),
        )

    def blobs(self) -> dict[str, TreeEntry]:
        return {e.path: e for e in self.entries if e.type == "blob"}


@dataclass(frozen=True)
class Content:
    path: str
    sha: str
    size: int
    content: bytes = field(repr=False)

    @property
    def text(self) -> str:
        try:
            return self.content.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedResponse(f"{self.path} is not UTF-8 text") from None

    @classmethod
    def from_json(cls, data: Any) -> Content:
        d = obj(data, "content")
        if d.get("type") != "file":
            raise MalformedResponse(f"GitHub's content at {d.get('path')!r} is not a file")
        if req(d, "encoding", str, "content") != "base64":
            raise fail("content", "encoding")
        try:
            raw = base64.b64decode(req(d, "content", str, "content").replace("\n", ""), validate=True)
        except (binascii.Error, ValueError):
            raise fail("content", "content") from None
        return cls(
            path=req(d, "path", str, "content"),
            sha=req(d, "sha", str, "content"),
            size=req(d, "size", int, "content"),
            content=raw,
        )


@dataclass(frozen=True)
class Commit:
    sha: str
    tree_sha: str
    parents: tuple[str, ...]
    message: str

    @classmethod
    def from_json(cls, data: Any) -> Commit:
        d = obj(data, "commit")
        tree = obj(d.get("tree"), "commit tree")
        parents = req(d, "parents", list, "commit")
        return cls(
            sha=req(d, "sha", str, "commit"),
            tree_sha=req(tree, "sha", str, "commit tree"),
            parents=tuple(req(obj(p, "commit parent"), "sha", str, "commit parent") for p in parents),
            message=req(d, "message", str, "commit"),
        )


@dataclass(frozen=True)
class PullRequest:
    number: int
    id: int
    html_url: str
    state: str  # "open" | "closed"
    merged: bool
    title: str
    body: str | None
    head_ref: str
    head_sha: str
    base_ref: str
    user_login: str | None = None  # who opened it (the App's bot for runnerguard's own PRs)

    @classmethod
    def from_json(cls, data: Any) -> PullRequest:
        d = obj(data, "pull request")
        head = obj(d.get("head"), "pull request head")
        base = obj(d.get("base"), "pull request base")
        # The list endpoint has no `merged`; `merged_at` says the same thing.
        merged = d.get("merged")
        if merged is None:
            merged = d.get("merged_at") is not None
        if not isinstance(merged, bool):
            raise fail("pull request", "merged")
        return cls(
            number=req(d, "number", int, "pull request"),
            id=req(d, "id", int, "pull request"),
            html_url=req(d, "html_url", str, "pull request"),
            state=req(d, "state", str, "pull request"),
            merged=merged,
            title=req(d, "title", str, "pull request"),
            body=opt(d, "body", str, "pull request"),
            head_ref=req(head, "ref", str, "pull request head"),
            head_sha=req(head, "sha", str, "pull request head"),
            base_ref=req(base, "ref", str, "pull request base"),
            user_login=opt(obj(d["user"], "pull request user"), "login", str, "pull request user")
            if d.get("user") is not None else None,
        )


@dataclass(frozen=True)
class IssueComment:
    id: int
    html_url: str
    body: str | None

    @classmethod
    def from_json(cls, data: Any) -> IssueComment:
        d = obj(data, "issue comment")
        return cls(
            id=req(d, "id", int, "issue comment"),
            html_url=req(d, "html_url", str, "issue comment"),
            body=opt(d, "body", str, "issue comment"),
        )


@dataclass(frozen=True)
class Job:
    id: int
    run_id: int
    name: str
    status: str
    conclusion: str | None
    head_sha: str
    head_branch: str | None
    workflow_name: str | None
    labels: tuple[str, ...]
    runner_name: str | None
    runner_group_name: str | None
    html_url: str | None
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    run_attempt: int = 1
    steps: tuple[Step, ...] = ()
    runner_id: int | None = None  # set once a runner took the job (the timeline's "it ran")

    @classmethod
    def from_json(cls, data: Any) -> Job:
        d = obj(data, "job")
        labels = req(d, "labels", list, "job")
        if not all(isinstance(label, str) for label in labels):
            raise fail("job", "labels")
        return cls(
            id=req(d, "id", int, "job"),
            run_id=req(d, "run_id", int, "job"),
            name=req(d, "name", str, "job"),
            status=req(d, "status", str, "job"),
            conclusion=opt(d, "conclusion", str, "job"),
            head_sha=req(d, "head_sha", str, "job"),
            head_branch=opt(d, "head_branch", str, "job"),
            workflow_name=opt(d, "workflow_name", str, "job"),
            labels=tuple(labels),
            runner_name=opt(d, "runner_name", str, "job"),
            runner_group_name=opt(d, "runner_group_name", str, "job"),
            html_url=opt(d, "html_url", str, "job"),
            created_at=time_field(d, "created_at", "job", optional=True),
            started_at=time_field(d, "started_at", "job", optional=True),
            completed_at=time_field(d, "completed_at", "job", optional=True),
            run_attempt=attempt_from(d, "job"),
            steps=steps_from(d.get("steps"), "job"),
            runner_id=opt(d, "runner_id", int, "job"),
        )


__all__ = [
    "Annotation",
    "App",
    "Commit",
    "Content",
    "HookDelivery",
    "HookDeliveryDetail",
    "Installation",
    "InstallationToken",
    "Issue",
    "IssueComment",
    "Job",
    "PullRequest",
    "RateLimit",
    "Ref",
    "Repo",
    "Step",
    "Tree",
    "TreeEntry",
    "WorkflowRun",
]
