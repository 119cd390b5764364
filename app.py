"""The runnerguard web service: `create_app()` builds the Flask app (gunicorn: `app:create_app()`)."""

from __future__ import annotations

import click
import redis
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from config import ConfigError, Settings, load_policy, load_settings
from config.notify_env import load_notify
from runnerguard import logs
from runnerguard.cli import deliveries as cli
from runnerguard.cli import errors as cli_errors
from runnerguard.cli import hosts as cli_hosts
from runnerguard.cli import notify as cli_notify
from runnerguard.cli import report as cli_report
from runnerguard.errors import RunnerguardError, Unavailable
from runnerguard.store import connection
from runnerguard.web import (
    admin,
    agent,
    dashboard,
    deliveries,
    health,
    hosts_api,
    metrics,
    rollbacks,
    session_auth,
    setup,
    state,
    watchdog,
    webhooks,
)
from runnerguard.web.intake import Intake


def create_app(settings: Settings | None = None, *, redis_client: redis.Redis | None = None) -> Flask:
    """Build the app; settings default to the environment (a bad one raises ConfigError before anything starts)."""
    try:
        settings = settings or load_settings()
        policy = load_policy(settings.policy_path)
        load_notify(policy.notifiers)  # a notifier's missing or bad secret stops start-up, as a bad policy does
    except ConfigError as exc:
        if click.get_current_context(silent=True) is not None:
            # Under the flask command: one line naming the key, not a traceback from inside the app factory.
            raise cli_errors.config_error(exc) from None
        raise
    logs.configure(settings.log_level)
    # REDIS_URL, or the primary the Sentinels name; short timeouts: a delivery is answered well within GitHub's 10 s.
    client = redis_client or connection.connect(settings, socket_timeout=connection.web_socket_timeout(settings),
                                                socket_connect_timeout=connection.WEB_CONNECT_TIMEOUT,
                                                retries=connection.WEB_RETRIES)
    app = Flask("runnerguard")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["SECRET_KEY"] = settings.secret_key or None
    app.json.sort_keys = False  # type: ignore[attr-defined]
    intake = Intake(settings=settings, policy=policy, client=client)
    state.init_app(app, state.WebState(settings=settings, policy=policy, redis=client, intake=intake))
    for blueprint in (webhooks.bp, health.bp, admin.bp, deliveries.bp, rollbacks.bp, hosts_api.bp,
                      watchdog.bp):
        app.register_blueprint(blueprint)
    # The long polls' own pool, sized to their cap, so they never starve the intake of connections.
    polls = connection.connect(settings, socket_timeout=agent.MAX_WAIT + 10, socket_connect_timeout=2,
                               max_connections=max(1, settings.agent_long_polls))
    agent.init_app(app, blocking=polls, limit=settings.agent_long_polls)
    cli.init_app(app)
    session_auth.init_app(app)  # the dashboard's login: session cookie settings, CSRF token, /login, /logout
    for blueprint in (metrics.bp, dashboard.bp, setup.bp):
        app.register_blueprint(blueprint)
    cli_report.init_app(app)
    cli_hosts.init_app(app)
    cli_notify.init_app(app)
    cli_errors.init_app(app)  # after every command is registered

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        # Every error is JSON (413 for an oversized body, 404, 405 ...), never an HTML page.
        return jsonify(error=exc.description or exc.name), exc.code or 500

    @app.errorhandler(RunnerguardError)
    def runnerguard_error(exc: RunnerguardError) -> tuple[Response, int]:
        # The one mapping of error kinds to answers: 400 bad input, 404, 409, 503; anything else says nothing more.
        if exc.http_status >= 500 and not isinstance(exc, Unavailable):
            app.logger.error("unexpected error: %s", type(exc).__name__)
            return jsonify(error="internal error"), 500
        return jsonify(error=str(exc)[:500]), exc.http_status

    @app.errorhandler(redis.RedisError)
    def redis_down(exc: redis.RedisError) -> tuple[Response, int]:
        app.logger.error("redis error: %s", str(exc)[:200])
        return jsonify(error="storage unavailable, try again later"), 503

    return app
