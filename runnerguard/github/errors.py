"""Typed errors of the GitHub client; none of them ever carries a key or a token."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from config.app_key import AppKeyError
from runnerguard.errors import RunnerguardError

# GitHub names the missing permission in the text of some 403s, e.g. "... without `workflows` permission".
_PERMISSION_IN_MESSAGE = re.compile(r"without `([a-z_]+)` permission")


class GitHubError(RunnerguardError):
    """Base: any failure talking to GitHub. `status` and `request_id` are None when no answer came back."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        method: str | None = None,
        path: str | None = None,
        documentation_url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.method = method
        self.path = path
        self.documentation_url = documentation_url

    def __str__(self) -> str:
        where = f"{self.method} {self.path}: " if self.method and self.path else ""
        status = f" (HTTP {self.status})" if self.status is not None else ""
        request = f" [request {self.request_id}]" if self.request_id else ""
        return f"{where}{self.message}{status}{request}"


# The App key's error is config's (it is checked at start); the client raises it under this name too.
GitHubKeyError = AppKeyError


class AuthError(GitHubError):
    """401: the App JWT or the installation token was refused (after one token refresh)."""


class Forbidden(GitHubError):
    """403 that is not a rate limit; `missing_permission` names the App permission GitHub says is lacking."""

    def __init__(self, message: str, *, missing_permission: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.missing_permission = missing_permission

    @staticmethod
    def permission_from(message: str, accepted_permissions: str | None) -> str | None:
        """The permission GitHub's message names, else the first of its `X-Accepted-GitHub-Permissions` header."""
        found = _PERMISSION_IN_MESSAGE.search(message)
        if found:
            return found.group(1)
        if accepted_permissions:
            first = accepted_permissions.split(";")[0].split(",")[0].strip()
            name = first.split("=")[0].strip()
            return name or None
        return None


class NotFound(GitHubError):
    """404 (GitHub also answers 404 for a repository the installation cannot see)."""


class NotRerunnable(GitHubError):
    """403 on a re-run that GitHub refuses for the run's state (still running, too old), not for a permission."""


class Gone(GitHubError):
    """410: e.g. issues are turned off in the repository."""


class Conflict(GitHubError):
    """409: e.g. a stale `sha` on a contents update, an empty repository, a run already completed."""


class Unprocessable(GitHubError):
    """422 with GitHub's `errors` list, so a caller can tell "already exists" from a real validation failure."""

    def __init__(self, message: str, *, errors: Sequence[Mapping[str, Any]] = (), **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.errors: tuple[Mapping[str, Any], ...] = tuple(errors)

    def texts(self) -> list[str]:
        texts = [self.message]
        for error in self.errors:
            texts += [str(error.get(key, "")) for key in ("message", "code")]
        return texts

    @property
    def already_exists(self) -> bool:
        """True for "Reference already exists", "A pull request already exists for ...", code `already_exists`."""
        return any("already exists" in text.lower() or text == "already_exists" for text in self.texts())

    @property
    def no_commits_between(self) -> bool:
        return any(text.startswith("No commits between") for text in self.texts())

    @property
    def not_fast_forward(self) -> bool:
        return any("not a fast forward" in text.lower() for text in self.texts())


class RateLimited(GitHubError):
    """A rate limit whose wait is longer than the client may block, or that persisted through every retry."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class Unavailable(GitHubError):
    """GitHub could not be reached (connection error, timeout) after every retry."""


class ServerError(Unavailable):
    """GitHub kept answering 5xx after every retry."""


class MalformedResponse(GitHubError):
    """GitHub's answer was not what its API description promises (bad JSON, a missing field, a wrong type)."""
