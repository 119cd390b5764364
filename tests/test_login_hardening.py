"""Login and admin-token hardening: the `next` target, throttled failures, the token's length, server-side sessions."""

from __future__ import annotations

import base64
import hashlib
import logging
import zlib

import pytest
import redis
from flask.testing import FlaskClient

from app import create_app
from config import ConfigError, Settings, load_settings
from devtools import run_local
from tests.helpers import ADMIN, SECRET, admin_headers
from tests.test_dashboard import csrf, login

HOSTILE_NEXT = [
    "/\t/evil.example", "/\n/evil.example", "/\r\nSet-Cookie: x=1", "\\\\evil.example", "/\\evil.example",
    "/%09/evil.example", "/%0a/evil.example", "/%2F/evil.example", "/%5Cevil.example", "//evil.example/x",
    "https://evil.example/", "javascript:alert(1)", "/ /evil.example", "/\x00", "/\u2028/evil.example",
    "/\u00a0/evil.example", " /", "evil.example", "/\x7f",
]


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_login_refuses_a_next_that_could_leave_the_site_with_400(client: FlaskClient, target: str) -> None:
    token = csrf(client)
    response = client.post("/login", data={"token": ADMIN, "csrf_token": token, "next": target})
    assert response.status_code == 400, target
    assert "Location" not in response.headers
    assert client.get("/").status_code == 302  # and no session was opened
    assert client.get("/login", query_string={"next": target}).status_code == 400


@pytest.mark.parametrize("target", ["/", "/dashboard/deliveries", "/?pool=linux&x=%20y", "/a/b-c_d.e"])
def test_login_follows_a_local_next(client: FlaskClient, target: str) -> None:
    response = client.post("/login", data={"token": ADMIN, "csrf_token": csrf(client), "next": target})
    assert response.status_code == 302 and response.headers["Location"] == target


def test_wrong_logins_are_throttled_per_address_with_retry_after(client: FlaskClient, caplog) -> None:  # type: ignore[no-untyped-def]
    statuses = []
    with caplog.at_level(logging.WARNING, logger="runnerguard.auth"):
        for _ in range(30):
            statuses.append(login(client, "wrong-token-" + "x" * 30).status_code)  # type: ignore[attr-defined]
    assert 403 in statuses and statuses[-1] == 429
    assert statuses.index(429) <= 11
    throttled = login(client, ADMIN)  # even the right token waits: the throttle answers before checking
    assert throttled.status_code == 429  # type: ignore[attr-defined]
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60  # type: ignore[attr-defined]
    bursts = [r for r in caplog.records if "throttled" in r.getMessage()]
    assert len(bursts) == 1  # logged once per burst, not once per attempt
    assert sum("failed" in r.getMessage() for r in caplog.records) <= 10
    # Another address is not throttled by this one.
    other = client.application.test_client()
    ok = other.post("/login", data={"token": ADMIN, "csrf_token": csrf(other), "next": "/"},
                    environ_overrides={"REMOTE_ADDR": "10.0.0.2"})
    assert ok.status_code == 302


def test_wrong_bearer_tokens_are_throttled_and_shared_between_processes(settings: Settings,
                                                                       redis_client: redis.Redis) -> None:
    first = create_app(settings).test_client()
    second = create_app(settings).test_client()  # another web process on the same Redis
    statuses = [c.get("/api/deliveries", headers=admin_headers("w" * 40)).status_code
                for c in [first, second] * 8]
    assert statuses[:10] == [403] * 10 and statuses[10:] == [429] * 6
    refused = second.get("/api/deliveries", headers=admin_headers())
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    # Once the window has passed, the right token works again.
    for key in redis_client.scan_iter("rg:auth:*"):
        redis_client.delete(key)
    assert first.get("/api/deliveries", headers=admin_headers()).status_code == 200


def test_failures_are_throttled_globally_across_addresses(client: FlaskClient) -> None:
    statuses = [client.get("/api/deliveries", headers=admin_headers("w" * 40),
                           environ_overrides={"REMOTE_ADDR": f"10.1.{n // 250}.{n % 250}"}).status_code
                for n in range(120)]
    assert statuses.count(403) == 100 and statuses[-1] == 429


def test_an_admin_token_shorter_than_32_characters_stops_start_up(redis_url: str) -> None:
    base = {"GITHUB_WEBHOOK_SECRET": SECRET, "REDIS_URL": redis_url}
    for short in ("x", "hunter2", "a" * 31):
        with pytest.raises(ConfigError, match=r"ADMIN_TOKEN.*32") as exc:
            load_settings({**base, "ADMIN_TOKEN": short})
        assert short not in str(exc.value)  # the error never repeats the secret
    assert load_settings({**base, "ADMIN_TOKEN": "a" * 32}).admin_token == "a" * 32
    assert load_settings(base).admin_token == ""  # no token: the admin API and dashboard stay off
    assert len(ADMIN) >= 32


def _cookie_payload(value: str) -> bytes:
    """Flask's cookie is readable by whoever holds it: base64 JSON (zlib'd when it starts with a dot), then a MAC."""
    compressed = value.startswith(".")
    data = value.lstrip(".").split(".")[0]
    decoded = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    return zlib.decompress(decoded) if compressed else decoded


def test_the_cookie_carries_a_random_session_id_not_a_digest_of_the_token(client: FlaskClient) -> None:
    login(client)
    cookie = client.get_cookie("runnerguard_session")
    assert cookie is not None
    payload = _cookie_payload(cookie.value)
    assert hashlib.sha256(b"runnerguard admin " + ADMIN.encode()).hexdigest().encode() not in payload
    assert ADMIN.encode() not in payload and b'"sid"' in payload
    login(client)  # a second login gets another id
    assert _cookie_payload(client.get_cookie("runnerguard_session").value) != payload  # type: ignore[union-attr]


def test_logout_revokes_the_session_server_side(client: FlaskClient, redis_client: redis.Redis) -> None:
    login(client)
    stolen = client.get_cookie("runnerguard_session").value  # type: ignore[union-attr]
    assert client.post("/logout", data={"csrf_token": csrf(client, "/")}).status_code == 302
    replayer = client.application.test_client()
    replayer.set_cookie("runnerguard_session", stolen)
    assert replayer.get("/").status_code == 302  # the old cookie opens nothing
    assert not any(True for _ in redis_client.scan_iter("rg:session:*"))


def test_a_new_admin_token_invalidates_sessions_even_with_a_fixed_secret_key(settings: Settings,
                                                                            redis_client: redis.Redis) -> None:
    keyed = settings.with_overrides(secret_key="s" * 40)
    client = create_app(keyed).test_client()
    login(client)
    cookie = client.get_cookie("runnerguard_session").value  # type: ignore[union-attr]
    same = create_app(keyed).test_client()
    same.set_cookie("runnerguard_session", cookie)
    assert same.get("/").status_code == 200
    rotated = create_app(keyed.with_overrides(admin_token="r" * 40)).test_client()
    rotated.set_cookie("runnerguard_session", cookie)
    assert rotated.get("/").status_code == 302


def test_sessions_expire_in_redis(client: FlaskClient, redis_client: redis.Redis) -> None:
    login(client)
    keys_ = list(redis_client.scan_iter("rg:session:*"))
    assert len(keys_) == 1
    assert 11 * 3600 < redis_client.ttl(keys_[0]) <= 12 * 3600
    redis_client.delete(keys_[0])
    assert client.get("/").status_code == 302


def test_make_run_generates_an_admin_token_that_passes_the_check(tmp_path, monkeypatch, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(run_local, "ENV_FILE", tmp_path / ".env")
    for key in ("ADMIN_TOKEN", "GITHUB_WEBHOOK_SECRET", "RUNNERGUARD_SECRET_KEY"):
        monkeypatch.delenv(key, raising=False)
    values = run_local.ensure_local_secrets({})
    settings = load_settings({**values, "REDIS_URL": redis_url})
    assert len(settings.admin_token) >= 32
