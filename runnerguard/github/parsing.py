"""Strict readers for GitHub's JSON: a missing field or a wrong type is a MalformedResponse, never a KeyError."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from runnerguard.github.errors import MalformedResponse

T = TypeVar("T")


def fail(what: str, key: str) -> MalformedResponse:
    return MalformedResponse(f"GitHub's {what} has no valid `{key}`")


def obj(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise MalformedResponse(f"GitHub's {what} is not a JSON object")
    return data


def req(data: Mapping[str, Any], key: str, typ: type[T], what: str) -> T:
    value = data.get(key)
    # bool is an int in Python, never in GitHub's JSON.
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise fail(what, key)
    return value


def opt(data: Mapping[str, Any], key: str, typ: type[T], what: str) -> T | None:
    if data.get(key) is None:
        return None
    return req(data, key, typ, what)


def time_field(data: Mapping[str, Any], key: str, what: str, *, optional: bool = False) -> datetime | None:
    raw = opt(data, key, str, what) if optional else req(data, key, str, what)
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise fail(what, key) from None
    # GitHub's timestamps are UTC; a bare one must not be read as local time.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
