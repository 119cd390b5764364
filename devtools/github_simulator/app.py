"""The simulator's Flask app: GitHub's authentication, rate-limit headers and injected failures around the routes."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from flask import Flask, Response, current_app, g, request

from devtools.github_simulator.errors import ApiError, bad_credentials
from devtools.github_simulator.state import RATE_LIMIT, RecordedRequest, SimToken, Simulator

JWT_MAX_LIFETIME = 600
JWT_SKEW = 60
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID."
)


def sim() -> Simulator:
    return current_app.extensions["github_simulator"]  # type: ignore[no-any-return]


def api_url() -> str:
    # url_root keeps a mount prefix such as GitHub Enterprise's /api/v3.
    return request.url_root.rstrip("/")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers or {}, mimetype="application/json")


def require_jwt() -> None:
    if g.auth != "jwt":
        raise ApiError(401, "A JSON web token could not be decoded")


def require_token(full_name: str, permission: str | None = None, level: str = "write") -> SimToken:
    """The caller's installation token, which must cover `full_name` (else 404, as GitHub hides the repo)."""
    token: SimToken | None = g.token
    if token is None:
        raise bad_credentials()
    installation = sim().installations.get(token.installation_id)
    if installation is None or full_name.lower() not in installation.repos:
        raise ApiError(404, "Not Found")
    if permission and token.permissions.get(permission) != level and not (
        level == "read" and token.permissions.get(permission) == "write"
    ):
        raise ApiError(403, "Resource not accessible by integration",
                       headers={"X-Accepted-GitHub-Permissions": f"{permission}={level}"})
    return token


def _check_jwt(credential: str, simulator: Simulator) -> None:
    try:
        claims = jwt.decode(credential, simulator.public_key, algorithms=["RS256"],
                            options={"verify_exp": False, "verify_iat": False, "require": ["iat", "exp", "iss"]})
    except jwt.PyJWTError:
        raise ApiError(401, "A JSON web token could not be decoded") from None
    now = simulator.clock()
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or iat > now + JWT_SKEW:
        raise ApiError(401, "'Issued at' claim ('iat') must be an Integer representing a time in the past.")
    if not isinstance(exp, int) or exp <= now or exp - iat > JWT_MAX_LIFETIME:
        raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future" if isinstance(exp, int)
                       and exp > now else "'Expiration time' claim ('exp') must be a numeric value representing "
                       "the future time at which the assertion expires")
    if str(claims.get("iss")) != str(simulator.app_id):
        raise ApiError(401, "'Issuer' claim ('iss') must be an Integer")


def _authenticate() -> None:
    simulator = sim()
    g.auth, g.token, g.principal = None, None, "anonymous"
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if not credential:
        return
    if scheme.lower() == "bearer" and credential.count(".") == 2:
        _check_jwt(credential, simulator)
        g.auth, g.principal = "jwt", "app"
    elif scheme.lower() in ("bearer", "token"):
        token = simulator.check_token(credential)
        if token is None:
            raise bad_credentials()
        g.auth, g.token, g.principal = "token", token, str(token.installation_id)
    else:
        raise bad_credentials()


def _before() -> Response | None:
    g.request_id = uuid.uuid4().hex[:16].upper()
    if request.path.startswith("/_sim") or request.blueprint == "sim_web":
        return None
    simulator = sim()
    headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
    g.record = RecordedRequest(request.method, request.path, request.query_string.decode(), headers, None, None,
                               simulator.clock(), started=time.monotonic())
    with simulator.lock:
        simulator.requests.append(g.record)
    _authenticate()
    g.record.auth = g.auth
    g.record.installation_id = g.token.installation_id if g.token else None
    simulator.count(g.principal)
    remaining, _ = simulator.rate(g.principal)
    if remaining == 0:
        raise ApiError(403, f"API rate limit exceeded for {g.principal}.")
    failure = simulator.take_failure(request.path)
    if failure is None:
        return None
    if failure.kind == "slow":
        time.sleep(failure.delay)
        return None
    if failure.kind == "lost":
        g.lose_answer = True  # handled for real; only the answer is late (see _after)
        return None
    if failure.kind == "timeout":
        time.sleep(simulator.timeout_delay)
        raise ApiError(504, "We couldn't respond to your request in time.")
    if failure.kind in ("secondary", "secondary-no-retry-after"):
        extra = {"retry-after": f"{failure.retry_after:g}"} if failure.kind == "secondary" else {}
        raise ApiError(403, SECONDARY_MESSAGE, headers=extra)
    if failure.kind == "primary":
        with simulator.lock:
            simulator.exhausted_until[g.principal] = simulator.clock() + failure.reset_in
        raise ApiError(403, f"API rate limit exceeded for {g.principal}.")
    assert isinstance(failure.kind, int)
    if failure.raw is not None:
        return Response(failure.raw, status=failure.kind, headers=failure.headers, mimetype="application/json")
    if failure.body is not None:
        return json_response(failure.body, failure.kind, failure.headers)
    raise ApiError(failure.kind, "Server Error" if failure.kind >= 500 else "Injected failure")


def _after(response: Response) -> Response:
    response.headers["X-GitHub-Request-Id"] = g.get("request_id", "")
    if request.path.startswith("/_sim") or request.blueprint == "sim_web":
        return response
    simulator = sim()
    remaining, reset = simulator.rate(g.get("principal", "anonymous"))
    response.headers.setdefault("x-ratelimit-limit", str(RATE_LIMIT))
    response.headers.setdefault("x-ratelimit-remaining", str(remaining))
    response.headers.setdefault("x-ratelimit-reset", str(reset))
    response.headers.setdefault("x-ratelimit-used", str(RATE_LIMIT - remaining))
    response.headers.setdefault("x-ratelimit-resource", "core")
    response.headers["X-GitHub-Api-Version-Selected"] = "2022-11-28"
    record = g.get("record")
    if record is not None:
        record.status, record.finished = response.status_code, time.monotonic()
    if g.get("lose_answer"):
        # The work is done, the answer comes after the client gave up: a lost answer, as after a network cut.
        time.sleep(simulator.timeout_delay)
    return response


def _api_error(exc: ApiError) -> Response:
    return json_response(exc.body(), exc.status, exc.headers)


def create_simulator(*, app_id: int, app_public_key_pem: bytes | RSAPublicKey, **options: Any) -> Flask:
    """A Flask app that answers like GitHub's REST API for one App; `options` go to `Simulator`."""
    # The route modules import this one: they are imported here, once the app exists.
    from devtools.github_simulator import (  # noqa: PLC0415
        control,
        control_actions,
        routes_actions,
        routes_app,
        routes_issues,
        routes_pulls,
        routes_repo,
        web_pages,
    )

    key = app_public_key_pem
    if isinstance(key, bytes | str):
        loaded = serialization.load_pem_public_key(key.encode() if isinstance(key, str) else key)
        assert isinstance(loaded, RSAPublicKey)
        key = loaded
    app = Flask("github_simulator")
    app.extensions["github_simulator"] = Simulator(app_id=app_id, public_key=key, **options)
    app.before_request(_before)
    app.after_request(_after)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(404, lambda _e: json_response(ApiError(404, "Not Found").body(), 404))
    app.register_error_handler(405, lambda _e: json_response(ApiError(404, "Not Found").body(), 404))
    for blueprint in (routes_app.bp, routes_repo.bp, routes_pulls.bp, routes_actions.bp, routes_issues.bp, control.bp,
                      control_actions.bp, web_pages.bp):
        app.register_blueprint(blueprint)
    return app
