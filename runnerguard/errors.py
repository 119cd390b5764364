"""The one error base: what kind of failure it is decides the HTTP answer and whether a task is retried.

Retry or not is decided by type, never by `ValueError`: a bug (any other exception) is retried with backoff and
then kept in the failed registry, where a person sees it; a `Permanent` error fails the task at once, with its reason.
"""

from __future__ import annotations


class RunnerguardError(Exception):
    """Base of every error runnerguard raises on purpose (an HTTP 500 where nothing more specific applies)."""

    http_status = 500


class Permanent(RunnerguardError):
    """Retrying cannot help (the payload lacks what the task needs, no such pool): fail now, record why."""


class InvalidInput(Permanent):
    """Input from outside is wrong (a payload, a request, a file): 400 at the edge, with the reason."""

    http_status = 400


class NotFound(Permanent):
    """The thing asked for does not exist (or no longer: past retention)."""

    http_status = 404


class Conflict(Permanent):
    """The request does not fit the current state (nothing to restore)."""

    http_status = 409


class Unavailable(RunnerguardError):
    """A dependency is away for now (Redis, GitHub): try again later."""

    http_status = 503
