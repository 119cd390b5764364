"""Issue calls of an installation: open, read, update (close with a reason), list with GitHub's filters."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from runnerguard.github.issue_models import Issue
from runnerguard.github.paths import repo as _repo

STATES = ("open", "closed")
LIST_STATES = ("open", "closed", "all")
STATE_REASONS = ("completed", "not_planned", "reopened")


class IssueCalls:
    """Mixed into `InstallationClient`, which provides `_call` and `_paginate`. Writes need `issues: write`."""

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover - the client's own
        raise NotImplementedError

    def _paginate(self, path: str, params: dict[str, Any]) -> Iterator[Any]:  # pragma: no cover
        raise NotImplementedError

    def create_issue(self, repo: str, *, title: str, body: str = "", labels: Sequence[str] = ()) -> Issue:
        """Sent once: after a timeout or 5xx it raises Unavailable (the issue may exist; find it with list_issues)
        rather than risk a second issue. Rate limits are still waited out, as GitHub did nothing then."""
        payload = {"title": title, "body": body, "labels": list(labels)}
        return Issue.from_json(self._call("POST", f"/repos/{_repo(repo)}/issues", json=payload, resend=False))

    def get_issue(self, repo: str, number: int) -> Issue:
        return Issue.from_json(self._call("GET", f"/repos/{_repo(repo)}/issues/{int(number)}"))

    def update_issue(self, repo: str, number: int, *, title: str | None = None, body: str | None = None,
                     state: str | None = None, state_reason: str | None = None,
                     labels: Sequence[str] | None = None) -> Issue:
        """Only the given fields change; closing without `state_reason` is GitHub's `completed`."""
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {STATES}")
        if state_reason is not None and state_reason not in STATE_REASONS:
            raise ValueError(f"state_reason must be one of {STATE_REASONS}")
        payload: dict[str, Any] = {k: v for k, v in (("title", title), ("body", body), ("state", state),
                                                      ("state_reason", state_reason)) if v is not None}
        if labels is not None:
            payload["labels"] = list(labels)
        return Issue.from_json(self._call("PATCH", f"/repos/{_repo(repo)}/issues/{int(number)}", json=payload))

    def list_issues(self, repo: str, *, state: str = "open", labels: Sequence[str] = (), creator: str | None = None,
                    per_page: int = 100) -> list[Issue]:
        """Issues with every label in `labels` (pull requests, which GitHub lists too, are left out), newest first."""
        if state not in LIST_STATES:
            raise ValueError(f"state must be one of {LIST_STATES}")
        if any("," in name or not name for name in labels):
            raise ValueError("label names in a filter cannot be empty or hold a comma (GitHub splits on commas)")
        params: dict[str, Any] = {"state": state, "per_page": per_page}
        if labels:
            params["labels"] = ",".join(labels)
        if creator:
            params["creator"] = creator
        found = (Issue.from_json(item) for item in self._paginate(f"/repos/{_repo(repo)}/issues", params))
        return [issue for issue in found if not issue.is_pull_request]
