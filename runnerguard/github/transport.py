"""HTTP to GitHub's REST API: headers, retries, rate-limit waits, typed errors, Link pagination."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import NewConnectionError

from runnerguard import APP_NAME, __version__
from runnerguard.github import errors
from runnerguard.github.errors import GitHubError, MalformedResponse, RateLimited, ServerError, Unavailable

log = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
USER_AGENT = f"{APP_NAME}/{__version__} (+https://github.com/apps/{APP_NAME})"
# GitHub's best practices: without retry-after, wait at least a minute on a secondary limit, then back off.
SECONDARY_LIMIT_WAIT = 60.0

# `auth(refresh)` returns the Authorization header value; refresh=True after a 401 asks for a new token.
Auth = Callable[[bool], str]
Gate = Callable[[], AbstractContextManager[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the client tries before raising: transient failures and rate limits are counted apart."""

    transient_attempts: int = 4  # retries of a 5xx / timeout / connection error
    backoff: float = 1.0  # first transient wait; doubles each retry
    max_backoff: float = 30.0
    rate_limit_attempts: int = 3  # retries after a rate-limit answer
    max_wait: float = 900.0  # a rate-limit wait longer than this raises RateLimited instead of blocking


class Transport:
    """One requests session bound to one API base URL; the clock and sleeper are injected."""

    def __init__(
        self,
        *,
        api_url: str,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        timeout: float | tuple[float, float] = (5.0, 30.0),
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.clock = clock
        self.sleep = sleep
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.session = session or requests.Session()
        self.session.headers.update(
            {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION, "User-Agent": USER_AGENT}
        )
        self._resume_at = 0.0  # a primary limit seen on a successful answer holds the next request

    def __repr__(self) -> str:
        return f"Transport(api_url={self.api_url!r})"

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            # Only ever send credentials to the configured API host (Link headers are followed as given).
            if urlsplit(path)[:2] != urlsplit(self.api_url)[:2]:
                raise MalformedResponse(f"GitHub pointed to a URL outside {self.api_url}")
            return path
        return self.api_url + path

    def request(
        self,
        method: str,
        path: str,
        *,
        auth: Auth,
        json: Any = None,
        params: dict[str, Any] | None = None,
        gate: Gate | None = None,
        resend: bool = True,
    ) -> requests.Response:
        """Send one API call, retrying what GitHub says may be retried; raise a typed error otherwise.

        `resend=False` is for a call that must not run twice (it creates something that nothing dedupes, such as an
        issue): after a timeout or a 5xx that may have followed GitHub's own work it raises instead of sending again.
        """
        url = self.url(path)
        where: dict[str, Any] = {"method": method, "path": urlsplit(url).path}
        transient = limited = 0
        refreshed = False
        while True:
            self._hold_for_primary_limit()
            headers = {"Authorization": auth(refreshed)}
            try:
                with gate() if gate else nullcontext():
                    response = self.session.request(
                        method, url, headers=headers, json=json, params=params, timeout=self.timeout
                    )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if not resend and not _never_sent(exc):
                    raise Unavailable(f"no answer from GitHub ({type(exc).__name__}); the call may have taken effect, "
                                      "so it was not sent again", **where) from None
                if transient >= self.retry.transient_attempts:
                    # Only the exception's class: its text can repeat the URL but never a header, yet stay terse.
                    raise Unavailable(f"GitHub unreachable: {type(exc).__name__}", **where) from None
                self._backoff(transient, f"{type(exc).__name__}", where)
                transient += 1
                continue
            status = response.status_code
            if status == 401 and not refreshed:
                refreshed = True  # an expired installation token: mint a new one, once
                continue
            wait = self._rate_limit_wait(response, limited)
            if wait is not None:
                if limited >= self.retry.rate_limit_attempts or wait > self.retry.max_wait:
                    raise RateLimited(
                        f"rate limited by GitHub; retry in {wait:.0f} s",
                        retry_after=wait,
                        **self._details(response, where),
                    )
                log.warning("github rate limited, waiting", extra={"wait": wait, **where, "status": status})
                self.sleep(wait)
                limited += 1
                continue
            if status >= 500:
                if transient >= self.retry.transient_attempts or not resend:
                    raise ServerError(_message(response), **self._details(response, where))
                self._backoff(transient, f"HTTP {status}", where)
                transient += 1
                continue
            if status >= 400:
                raise error_for(response, where)
            self._note_primary_limit(response)
            return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return decode(response)

    def paginate(self, path: str, *, auth: Auth, params: dict[str, Any] | None = None, key: str | None = None
                 ) -> Iterator[Any]:
        """Every item of a listing, page after page, following the `Link: rel="next"` header."""
        url: str | None = path
        while url:
            response = self.request("GET", url, auth=auth, params=params)
            body = decode(response)
            items = body.get(key) if key and isinstance(body, dict) else body
            if not isinstance(items, list):
                raise MalformedResponse(f"GitHub's listing of {urlsplit(response.url).path} is not a list")
            yield from items
            url = response.links.get("next", {}).get("url")
            params = None  # the next link carries the query

    def _backoff(self, attempt: int, reason: str, where: dict[str, Any]) -> None:
        wait = min(self.retry.backoff * (2**attempt), self.retry.max_backoff)
        log.warning("github request failed, retrying", extra={"reason": reason, "wait": wait, **where})
        self.sleep(wait)

    def _rate_limit_wait(self, response: requests.Response, attempt: int) -> float | None:
        """Seconds to wait if the answer is a rate limit (primary or secondary), else None."""
        if response.status_code not in (403, 429):
            return None
        headers = response.headers
        retry_after = headers.get("retry-after")
        if retry_after is not None:
            try:
                return max(float(retry_after), 0.0)
            except ValueError:
                return SECONDARY_LIMIT_WAIT
        if headers.get("x-ratelimit-remaining") == "0":
            try:
                return max(float(headers.get("x-ratelimit-reset", "")) - self.clock(), 0.0) + 1.0
            except ValueError:
                return SECONDARY_LIMIT_WAIT
        if response.status_code == 429 or "rate limit" in _message(response).lower():
            return float(SECONDARY_LIMIT_WAIT * 2**attempt)
        return None

    def _note_primary_limit(self, response: requests.Response) -> None:
        if response.headers.get("x-ratelimit-remaining") == "0":
            try:
                self._resume_at = float(response.headers.get("x-ratelimit-reset", ""))
            except ValueError:
                self._resume_at = 0.0

    def _hold_for_primary_limit(self) -> None:
        wait = self._resume_at - self.clock()
        if wait > self.retry.max_wait:
            raise RateLimited(f"GitHub's rate limit resets in {wait:.0f} s", retry_after=wait)
        if wait > 0:
            self.sleep(wait + 1.0)
        self._resume_at = 0.0

    @staticmethod
    def _details(response: requests.Response, where: dict[str, Any]) -> dict[str, Any]:
        return {"status": response.status_code, "request_id": response.headers.get("x-github-request-id"), **where}


def _never_sent(exc: Exception) -> bool:
    """Only a failed connect proves the request never left; after that GitHub may have acted on it."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)  # refused, no route: nothing was written


def decode(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise MalformedResponse(
            "GitHub answered with malformed JSON",
            status=response.status_code,
            request_id=response.headers.get("x-github-request-id"),
            path=urlsplit(response.url).path,
        ) from None


def _body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(response: requests.Response) -> str:
    message = _body(response).get("message")
    return str(message)[:500] if message else f"HTTP {response.status_code}"


def error_for(response: requests.Response, where: dict[str, Any]) -> GitHubError:
    """The typed error for a 4xx answer."""
    body = _body(response)
    message = _message(response)
    details: dict[str, Any] = {
        "status": response.status_code,
        "request_id": response.headers.get("x-github-request-id"),
        "documentation_url": body.get("documentation_url"),
        **where,
    }
    status = response.status_code
    if status == 401:
        return errors.AuthError(message, **details)
    if status == 403:
        missing = errors.Forbidden.permission_from(message, response.headers.get("x-accepted-github-permissions"))
        return errors.Forbidden(message, missing_permission=missing, **details)
    if status == 404:
        return errors.NotFound(message, **details)
    if status == 409:
        return errors.Conflict(message, **details)
    if status == 410:
        return errors.Gone(message, **details)
    if status == 422:
        raw = body.get("errors")
        items = [e if isinstance(e, dict) else {"message": str(e)} for e in raw] if isinstance(raw, list) else []
        return errors.Unprocessable(message, errors=items, **details)
    return GitHubError(message, **details)
