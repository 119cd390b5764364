"""Admin authentication: `Authorization: Bearer $ADMIN_TOKEN`, compared in constant time; off when no token is set."""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import jsonify, request

from runnerguard.store.throttle import Throttle
from runnerguard.web.state import state

log = logging.getLogger("runnerguard.auth")
F = TypeVar("F", bound=Callable[..., Any])
API_SCOPE, LOGIN_SCOPE = "api", "login"
THROTTLED = "too many failed attempts: try again in {seconds} s"


def throttle(scope: str) -> Throttle:
    return Throttle(state().redis, scope)


def count_failure(scope: str) -> None:
    """Count a failed attempt; log the attempt while under the limit, and the start of a burst once."""
    if throttle(scope).failed(request.remote_addr):
        log.warning("authentication failures throttled", extra={"status": 429, "scope": scope,
                                                                 "client": request.remote_addr})


def bearer_ok(expected: str, header: str | None) -> bool:
    if not expected or not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].strip().encode(), expected.encode())


def require_admin(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        expected = state().settings.admin_token
        if not expected:
            return jsonify(error="the admin API is disabled: set ADMIN_TOKEN to enable it"), 403
        # Before the token is looked at: a throttled client learns nothing, right token or not.
        wait = throttle(API_SCOPE).retry_after(request.remote_addr)
        if wait:
            return jsonify(error=THROTTLED.format(seconds=wait)), 429, {"Retry-After": str(wait)}
        header = request.headers.get("Authorization")
        if not header:
            return (jsonify(error="missing Authorization: Bearer token"), 401,
                    {"WWW-Authenticate": 'Bearer realm="runnerguard"'})
        if not bearer_ok(expected, header):
            # Never log the presented token, only that an attempt failed and from where.
            log.warning("admin auth failed", extra={"status": 403})
            count_failure(API_SCOPE)
            return jsonify(error="invalid admin token"), 403
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
