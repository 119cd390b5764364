"""Typed records of the App itself: installations, tokens, webhook deliveries, rate limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runnerguard.github.parsing import fail, obj, opt, req, time_field


@dataclass(frozen=True)
class Installation:
    id: int
    app_id: int
    account_login: str | None
    target_type: str
    repository_selection: str
    permissions: Mapping[str, str]
    suspended: bool

    @classmethod
    def from_json(cls, data: Any) -> Installation:
        d = obj(data, "installation")
        account = d.get("account")
        login = opt(obj(account, "installation account"), "login", str, "account") if account else None
        perms = obj(d.get("permissions"), "installation permissions")
        return cls(
            id=req(d, "id", int, "installation"),
            app_id=req(d, "app_id", int, "installation"),
            account_login=login,
            target_type=req(d, "target_type", str, "installation"),
            repository_selection=req(d, "repository_selection", str, "installation"),
            permissions={str(k): str(v) for k, v in perms.items()},
            suspended=d.get("suspended_at") is not None,
        )


@dataclass(frozen=True)
class App:
    id: int
    slug: str | None
    name: str

    @classmethod
    def from_json(cls, data: Any) -> App:
        d = obj(data, "app")
        return cls(
            id=req(d, "id", int, "app"),
            slug=opt(d, "slug", str, "app"),
            name=req(d, "name", str, "app"),
        )


@dataclass(frozen=True)
class HookDelivery:
    id: int
    guid: str
    delivered_at: datetime
    redelivery: bool
    status: str
    status_code: int
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    @classmethod
    def fields_from(cls, data: Any) -> dict[str, Any]:
        d = obj(data, "hook delivery")
        return {
            "id": req(d, "id", int, "hook delivery"),
            "guid": req(d, "guid", str, "hook delivery"),
            "delivered_at": time_field(d, "delivered_at", "hook delivery"),
            "redelivery": req(d, "redelivery", bool, "hook delivery"),
            "status": req(d, "status", str, "hook delivery"),
            "status_code": req(d, "status_code", int, "hook delivery"),
            "event": req(d, "event", str, "hook delivery"),
            "action": opt(d, "action", str, "hook delivery"),
            "installation_id": opt(d, "installation_id", int, "hook delivery"),
            "repository_id": opt(d, "repository_id", int, "hook delivery"),
        }

    @classmethod
    def from_json(cls, data: Any) -> HookDelivery:
        return cls(**cls.fields_from(data))


@dataclass(frozen=True)
class HookDeliveryDetail(HookDelivery):
    request_headers: Mapping[str, str] = field(default_factory=dict)
    request_payload: Mapping[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def from_json(cls, data: Any) -> HookDeliveryDetail:
        fields = cls.fields_from(data)
        request = obj(obj(data, "hook delivery").get("request"), "hook delivery request")
        headers = request.get("headers") or {}
        payload = request.get("payload")
        if not isinstance(headers, Mapping) or not (payload is None or isinstance(payload, Mapping)):
            raise fail("hook delivery", "request")
        return cls(**fields, request_headers={str(k): str(v) for k, v in headers.items()}, request_payload=payload)


@dataclass(frozen=True)
class RateLimit:
    limit: int
    remaining: int
    reset: int
    used: int

    @classmethod
    def from_json(cls, data: Any) -> RateLimit:
        d = obj(obj(data, "rate limit").get("rate"), "rate limit `rate`")
        return cls(
            limit=req(d, "limit", int, "rate limit"),
            remaining=req(d, "remaining", int, "rate limit"),
            reset=req(d, "reset", int, "rate limit"),
            used=req(d, "used", int, "rate limit"),
        )


@dataclass(frozen=True)
class InstallationToken:
    """A token with its expiry (epoch seconds); its repr never shows the token."""

    token: str = field(repr=False)
    expires_at: float

    @classmethod
    def from_json(cls, data: Any) -> InstallationToken:
        d = obj(data, "installation token")
        expires = time_field(d, "expires_at", "installation token")
        assert expires is not None
        return cls(token=req(d, "token", str, "installation token"), expires_at=expires.timestamp())
