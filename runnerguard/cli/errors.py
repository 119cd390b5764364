"""What the `flask --app app ...` commands say when Redis or the configuration is not there: one line, no traceback."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlsplit

import click
import redis
from flask import Flask

from config import ConfigError
from runnerguard.web.state import state

NO_REDIS = ("Redis is not reachable at {url} ({why}); is `make run` running? "
            "(the command uses REDIS_URL from the environment or .env)")
BAD_CONFIG = "configuration: {error} (make run writes .env; see .env.example)"


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(unparsable REDIS_URL)"
    return url.replace(f":{password}@", ":***@", 1) if password else url


def config_error(exc: ConfigError) -> click.ClickException:
    return click.ClickException(BAD_CONFIG.format(error=exc))


def _redis_url() -> str:
    try:
        return state().settings.redis_url
    except (RuntimeError, KeyError):  # no app context: the URL is not known here
        return "REDIS_URL"


def _guarded(invoke: Any, ctx: click.Context) -> Any:
    try:
        return invoke(ctx)
    except redis.AuthenticationError:
        raise click.ClickException(NO_REDIS.format(url=redacted(_redis_url()), why="it refused the password")) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        why = "connection refused" if "refused" in str(exc).lower() else type(exc).__name__
        raise click.ClickException(NO_REDIS.format(url=redacted(_redis_url()), why=why)) from None
    except redis.ResponseError as exc:
        if str(exc).startswith(("NOAUTH", "WRONGPASS")) or "authenticated" in str(exc):
            raise click.ClickException(NO_REDIS.format(url=redacted(_redis_url()), why="it wants a password")) from None
        raise


def init_app(app: Flask) -> None:
    """Wrap every command registered so far on `app.cli` (groups included, so their subcommands too)."""
    for command in app.cli.commands.values():
        if not getattr(command, "_runnerguard_guarded", False):
            # An instance attribute shadows the class's method: the command runs as before, inside the guard.
            command.invoke = functools.partial(_guarded, command.invoke)  # type: ignore[method-assign]
            command._runnerguard_guarded = True  # type: ignore[attr-defined]
