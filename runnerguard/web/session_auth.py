"""Browser login for the dashboard: the admin token once, then a Secure, HttpOnly session cookie and a CSRF token."""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import unicodedata
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from flask import Blueprint, Flask, abort, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer
from werkzeug.wrappers import Response

from runnerguard.store import web_sessions
from runnerguard.web.auth import LOGIN_SCOPE, THROTTLED, count_failure, throttle
from runnerguard.web.state import EXTENSION, state

log = logging.getLogger("runnerguard.auth")
bp = Blueprint("session_auth", __name__, template_folder="templates")
F = TypeVar("F", bound=Callable[..., Any])
SESSION_LIFETIME = timedelta(hours=12)
KEY_CONTEXT = b"runnerguard session key v1"

LOGIN_DISABLED = "The dashboard is disabled: set ADMIN_TOKEN to enable it."
LOGIN_FAILED = "That token is not the admin token."
BAD_NEXT = "The page to return to after signing in must be a path of this site."
MAX_NEXT_CHARS = 2000
CSRF_FAILED = "This form has expired or did not come from this dashboard. Reload the page and try again."


def derive_secret_key(admin_token: str) -> str:
    """A key every gunicorn worker derives alike, and that survives restarts; the token itself never leaves."""
    return hmac.new(admin_token.encode(), KEY_CONTEXT, hashlib.sha256).hexdigest()


class CachedSigningSessionInterface(SecureCookieSessionInterface):
    """Flask's cookie sessions, with the signing serializer built once per set of keys instead of per request.

    Flask opens the session of every request, webhook deliveries included, and builds a new URLSafeTimedSerializer
    each time (itsdangerous checks its serializer against a runtime Protocol, which is slow). The serializer holds
    no per-request state, so one per key set serves every thread.
    """

    def __init__(self) -> None:
        self._cached: tuple[tuple[Any, ...], URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, *(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached = self._cached
        if cached is None or cached[0] != keys:
            cached = (keys, super().get_signing_serializer(app))
            self._cached = cached
        return cached[1]


def init_app(app: Flask) -> None:
    """Session settings and the login routes; call after state.init_app."""
    settings = state_settings(app)
    if not app.config.get("SECRET_KEY"):
        # With no admin token there is no login, so a random key (sessions never needed) is harmless.
        app.config["SECRET_KEY"] = (derive_secret_key(settings.admin_token) if settings.admin_token
                                    else secrets.token_hex(32))
    app.config.update(
        SESSION_COOKIE_SECURE=True, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="runnerguard_session", PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )
    app.session_interface = CachedSigningSessionInterface()
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.register_blueprint(bp)


def state_settings(app: Flask) -> Any:
    return app.extensions[EXTENSION].settings


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    if not sent or not expected or not hmac.compare_digest(sent.encode(), str(expected).encode()):
        abort(400, CSRF_FAILED)


def logged_in() -> bool:
    web = state()
    token = web.settings.admin_token
    # The cookie holds a random id; Redis says whether it is still open (logout and a new token close it).
    return bool(token) and web_sessions.is_open(web.redis, token, session.get("sid"))


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not logged_in():
            return redirect(url_for("session_auth.login", next=request.path))
        if request.method == "POST":
            check_csrf()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _unsafe_char(text: str) -> bool:
    # Control, format, separator (every kind of space) and unassigned characters: browsers drop or rewrite some
    # of them (a TAB in "/\t/evil" leaves "//evil", a host), and a newline cannot go in a header at all.
    return any(unicodedata.category(ch)[0] in "CZ" or ch == "\\" for ch in text)


def _local_path(raw: str) -> bool:
    if len(raw) > MAX_NEXT_CHARS or not raw.startswith("/") or raw.startswith("//") or _unsafe_char(raw):
        return False
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc:
        return False
    # The path once decoded must hold too ("/%09/evil", "/%2F/evil"); the query may encode spaces as it likes.
    path = unquote(parts.path)
    return not path.startswith("//") and not _unsafe_char(path)


def _safe_next(raw: str | None) -> str:
    """Only a path of this site: an open redirect after login would hand the session to a phishing page."""
    if not raw:
        return str(url_for("dashboard.index"))
    if not _local_path(raw):
        abort(400, BAD_NEXT)
    return raw


def _throttled(wait: int, next_target: str) -> tuple[str, int, dict[str, str]]:
    return (render_template("login.html", error=THROTTLED.format(seconds=wait).capitalize() + ".",
                            next=next_target), 429, {"Retry-After": str(wait)})


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int] | tuple[str, int, dict[str, str]] | str:
    token = state().settings.admin_token
    if not token:
        return render_template("login.html", error=LOGIN_DISABLED, disabled=True), 403
    if request.method == "GET":
        next_target = request.args.get("next", "")
        _safe_next(next_target)  # refuse a bad target now, not after the admin typed the token
        return render_template("login.html", error=None, next=next_target)
    check_csrf()
    next_target = request.form.get("next", "")
    target = _safe_next(next_target)
    web = state()
    # Before the token is looked at: a throttled client learns nothing, right token or not.
    wait = throttle(LOGIN_SCOPE).retry_after(request.remote_addr)
    if wait:
        return _throttled(wait, next_target)
    presented = request.form.get("token", "")
    if not hmac.compare_digest(presented.strip().encode(), token.encode()):
        log.warning("dashboard login failed", extra={"status": 403})
        count_failure(LOGIN_SCOPE)
        return render_template("login.html", error=LOGIN_FAILED, next=next_target), 403
    web_sessions.close(web.redis, token, session.get("sid"))
    session.clear()  # a fresh session (and CSRF token) at login: no fixation of one set before
    session.permanent = True
    session["sid"] = web_sessions.open_session(web.redis, token,
                                               ttl_seconds=int(SESSION_LIFETIME.total_seconds()))
    return redirect(target)


@bp.post("/logout")
def logout() -> Response:
    check_csrf()
    web = state()
    if web.settings.admin_token:
        web_sessions.close(web.redis, web.settings.admin_token, session.get("sid"))
    session.clear()
    return redirect(url_for("session_auth.login"))
