"""Typed record of a GitHub issue (a pull request listed by the issues API carries `is_pull_request`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runnerguard.github.parsing import fail, obj, opt, req, time_field


@dataclass(frozen=True)
class Issue:
    id: int
    number: int
    title: str
    body: str | None
    state: str  # "open" | "closed"
    state_reason: str | None  # "completed" | "not_planned" | "reopened" | None
    labels: tuple[str, ...]
    user_login: str | None
    html_url: str
    comments: int
    is_pull_request: bool
    created_at: datetime | None
    updated_at: datetime | None
    closed_at: datetime | None

    @classmethod
    def from_json(cls, data: Any) -> Issue:
        d = obj(data, "issue")
        raw_labels = req(d, "labels", list, "issue")
        # GitHub lists labels as objects; an older form is bare names.
        names = [x.get("name") if isinstance(x, dict) else x for x in raw_labels]
        if not all(isinstance(name, str) for name in names):
            raise fail("issue", "labels")
        user = d.get("user")
        login = opt(obj(user, "issue user"), "login", str, "issue user") if user is not None else None
        return cls(
            id=req(d, "id", int, "issue"),
            number=req(d, "number", int, "issue"),
            title=req(d, "title", str, "issue"),
            body=opt(d, "body", str, "issue"),
            state=req(d, "state", str, "issue"),
            state_reason=opt(d, "state_reason", str, "issue"),
            labels=tuple(str(name) for name in names),
            user_login=login,
            html_url=req(d, "html_url", str, "issue"),
            comments=opt(d, "comments", int, "issue") or 0,
            is_pull_request=d.get("pull_request") is not None,
            created_at=time_field(d, "created_at", "issue", optional=True),
            updated_at=time_field(d, "updated_at", "issue", optional=True),
            closed_at=time_field(d, "closed_at", "issue", optional=True),
        )
