"""Issues as GitHub keeps them: numbers shared with pull requests, states with a reason, filters of the listing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from devtools.github_simulator.errors import ApiError, not_found, validation_failed
from devtools.github_simulator.repos import SimRepo, next_id

STATES = ("open", "closed")
STATE_REASONS = ("completed", "not_planned", "reopened")
ISSUES_DISABLED = "Issues are disabled for this repo"


@dataclass
class SimIssue:
    number: int
    id: int
    title: str
    body: str | None
    user: str
    created_at: float
    updated_at: float
    state: str = "open"
    state_reason: str | None = None
    closed_at: float | None = None


def require_issues(repo: SimRepo) -> None:
    if not repo.has_issues:
        raise ApiError(410, ISSUES_DISABLED)


def label_names(raw: Any) -> list[str]:
    """GitHub takes label names or {"name": ...} objects."""
    if raw is None:
        return []
    names = [x.get("name") if isinstance(x, dict) else x for x in raw] if isinstance(raw, list) else None
    if names is None or not all(isinstance(x, str) and x for x in names):
        raise validation_failed("Issue", "labels must be a list of names", code="invalid", field="labels")
    return list(dict.fromkeys(str(x) for x in names))


def open_issue(repo: SimRepo, *, title: Any, body: Any, labels: Any, user: str, now: float) -> SimIssue:
    require_issues(repo)
    if not isinstance(title, str | int) or isinstance(title, bool) or not str(title).strip():
        raise validation_failed("Issue", "title is required", code="missing_field", field="title")
    if body is not None and not isinstance(body, str):
        raise validation_failed("Issue", "body is not a string", code="invalid", field="body")
    names = label_names(labels)
    issue = SimIssue(next(repo.numbers), next_id(), str(title), body, user, now, now)
    repo.issues[issue.number] = issue
    if names:
        repo.labels[issue.number] = names
    return issue


def update_issue(repo: SimRepo, issue: SimIssue, data: dict[str, Any], *, now: float) -> None:
    """PATCH semantics: closing without a reason is `completed`, reopening is `reopened`."""
    state, reason = data.get("state", issue.state), data.get("state_reason", "unset")
    if state not in STATES:
        raise validation_failed("Issue", "state is not valid", code="invalid", field="state")
    if reason != "unset" and reason is not None and reason not in STATE_REASONS:
        raise validation_failed("Issue", "state_reason is not valid", code="invalid", field="state_reason")
    if state == "open" and reason in ("completed", "not_planned"):
        raise validation_failed("Issue", "an open issue cannot have this state_reason", code="invalid",
                                field="state_reason")
    for key in ("title", "body"):
        if key in data and not (data[key] is None and key == "body") and not isinstance(data[key], str):
            raise validation_failed("Issue", f"{key} is not a string", code="invalid", field=key)
    if "labels" in data:
        repo.labels[issue.number] = label_names(data["labels"])
    if "title" in data:
        issue.title = data["title"]
    if "body" in data:
        issue.body = data["body"]
    if state == "closed" and issue.state == "open":
        issue.closed_at = now
        issue.state_reason = "completed" if reason in ("unset", None) else reason
    elif state == "open" and issue.state == "closed":
        issue.closed_at, issue.state_reason = None, "reopened"
    elif reason != "unset":
        issue.state_reason = reason
    issue.state, issue.updated_at = state, now


class IssuesControl:
    """The control API of issues; mixed into `Simulator`, which provides these."""

    lock: threading.RLock
    clock: Callable[[], float]

    def repo(self, full_name: str) -> SimRepo:  # pragma: no cover - Simulator's own
        raise NotImplementedError

    def add_issue(self, full_name: str, title: str, *, body: str | None = None, labels: Iterable[str] = (),
                  user: str = "octocat", state: str = "open") -> SimIssue:
        """An issue someone else opened (or closed)."""
        with self.lock:
            repo, now = self.repo(full_name), self.clock()
            issue = open_issue(repo, title=title, body=body, labels=list(labels), user=user, now=now)
            if state == "closed":
                update_issue(repo, issue, {"state": "closed"}, now=now)
            return issue

    def issues(self, full_name: str) -> list[SimIssue]:
        return sorted(self.repo(full_name).issues.values(), key=lambda i: i.number)

    def issue(self, full_name: str, number: int) -> SimIssue:
        found = self.repo(full_name).issues.get(number)
        if found is None:
            raise not_found()
        return found

    def set_issues_enabled(self, full_name: str, enabled: bool) -> None:
        """A repository with issues turned off answers 410 Gone to every issue call, as GitHub does."""
        with self.lock:
            self.repo(full_name).has_issues = enabled
