"""Admin authentication: `Authorization: Bearer $ADMIN_TOKEN`, compared in constant time; off when no token is set."""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import jsonify, request

from runnerguard.web.state import state

log = logging.getLogger("runnerguard.auth")
F = TypeVar("F", bound=Callable[..., Any])


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
        header = request.headers.get("Authorization")
        if not header:
            return (jsonify(error="missing Authorization: Bearer token"), 401,
                    {"WWW-Authenticate": 'Bearer realm="runnerguard"'})
        if not bearer_ok(expected, header):
            # Never log the presented token, only that an attempt failed and from where.
            log.warning("admin auth failed", extra={"status": 403})
            return jsonify(error="invalid admin token"), 403
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
