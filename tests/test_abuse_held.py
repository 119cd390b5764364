"""What held in the adversarial review (issue 19), kept under test: signatures, hostile encodings, pattern timing,
the admin token's only channel, no session fixation, request smuggling at gunicorn, and no secret in any log."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

import config.policy
import runnerguard.domain.names
import runnerguard.domain.timeparse
import runnerguard.github.client
import runnerguard.github.paths
import runnerguard.prewarm.specs
import runnerguard.prewarm.stamp
import runnerguard.services.app_setup
import runnerguard.web.intake
import runnerguard.web.prometheus
from devtools.redis_server import RedisServer, free_port
from devtools.reliability_stack import wait_for
from runnerguard.domain.signatures import sign
from runnerguard.logs import JsonFormatter
from runnerguard.store import delivery_index, keys
from tests.helpers import ADMIN, SECRET, admin_headers, dumps, signed_headers
from tests.test_dashboard import csrf, login
from tests.test_timeline import job_payload

ROOT = Path(__file__).resolve().parents[1]
BODY = b'{"action": "queued"}'


def test_eighteen_signature_variants_are_refused(client: FlaskClient, redis_client: redis.Redis) -> None:
    good = sign(SECRET, BODY)
    hexdigest = good[len("sha256="):]
    variants = {
        "missing": None, "empty": "", "prefix only": "sha256=", "sha1 prefix": "sha1=" + hexdigest,
        "sha512 prefix": "sha512=" + hexdigest, "no prefix": hexdigest, "upper prefix": "SHA256=" + hexdigest,
        "upper hex": "sha256=" + hexdigest.upper(), "truncated": good[:-1], "extended": good + "0",
        "doubled prefix": "sha256=" + good, "leading space": " " + good, "trailing tab": good + "\t",
        "other body": sign(SECRET, BODY + b"\n"), "other secret": sign(SECRET + "x", BODY),
        "empty-secret signature": sign("", BODY), "non-hex": "sha256=" + "g" * 64,
        "two signatures": f"{good},{good}", "unicode digits": "sha256=" + "\u0660" * 64,
    }
    assert len(variants) >= 18
    for name, signature in variants.items():
        headers = signed_headers(BODY, "workflow_job")
        if signature is None:
            del headers["X-Hub-Signature-256"]
        else:
            headers["X-Hub-Signature-256"] = signature
        try:
            status = client.post("/webhooks/github", data=BODY, headers=headers).status_code
        except (ValueError, UnicodeEncodeError):
            continue  # the HTTP client itself refuses to send that header: nothing reaches us
        assert status == 401, name
    assert delivery_index.count(redis_client) == 0


def test_hostile_encodings_are_400_and_store_nothing(client: FlaskClient, redis_client: redis.Redis) -> None:
    bodies = {
        "utf-16": '{"action": "queued"}'.encode("utf-16"),
        "utf-16-le": '{"action": "queued"}'.encode("utf-16-le"),
        "bom": b"\xef\xbb\xbf" + BODY,
        "invalid utf-8": b'{"action": "\xc3\x28"}',
        "lone surrogate": b'{"action": "\xed\xa0\x80"}',
        "deep nesting": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    }
    for name, body in bodies.items():
        response = client.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job"))
        assert response.status_code == 400, name
    assert delivery_index.count(redis_client) == 0


def test_an_escaped_lone_surrogate_and_60k_labels_are_data_not_a_500(client: FlaskClient, drain) -> None:  # type: ignore[no-untyped-def]
    surrogate = b'{"action": "queued", "workflow_job": {"name": "\\ud800"}}'
    assert client.post("/webhooks/github", data=surrogate,
                       headers=signed_headers(surrogate, "workflow_job")).status_code in (202, 400)
    body = dumps(job_payload("queued", id=61, labels=[f"l{n}" for n in range(60_000)]))
    response = client.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job"))
    assert response.status_code in (202, 400, 413)
    drain()  # the tasks cope with it too (a failure is recorded, never a crash of the worker)


def test_a_body_over_the_limit_is_413(client: FlaskClient, redis_client: redis.Redis) -> None:
    body = b'{"a": "' + b"x" * (1024 * 1024) + b'"}'
    assert client.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job")).status_code == 413
    assert delivery_index.count(redis_client) == 0


PATTERN_MODULES = (runnerguard.web.intake, runnerguard.domain.names, runnerguard.domain.timeparse, config.policy,
                   runnerguard.services.app_setup, runnerguard.github.paths, runnerguard.prewarm.specs,
                   runnerguard.prewarm.stamp, runnerguard.web.prometheus)
HOSTILE_TEXTS = ("a" * 100_000, "a" * 99_999 + "!", "-" * 100_000 + "\n", "/" * 100_000, " " * 100_000 + "x",
                 "1" * 100_000 + "q", ("a=\"" + "\\\\" * 50_000), "{" * 100_000, "a/" * 50_000)


def _patterns() -> Iterator[tuple[str, re.Pattern[str]]]:
    for module in PATTERN_MODULES:
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern) and isinstance(value.pattern, str):
                yield f"{module.__name__}.{name}", value


def test_no_input_pattern_backtracks_on_100k_characters() -> None:
    # As the code uses them: anchored (match / fullmatch). An unanchored search of an identifier pattern is
    # quadratic by nature (prometheus.LABEL_RE: a minute on 100 k letters); none runs on outside input.
    patterns = list(_patterns())
    assert len(patterns) >= 15
    for name, pattern in patterns:
        for text in HOSTILE_TEXTS:
            for method in (pattern.fullmatch, pattern.match):
                # The best of three, under 100 ms: a linear scan of 100 k characters takes 1-5 ms idle and up to
                # ~15 ms on this 2-core machine under the parallel suite, while backtracking takes seconds. (The
                # review's 10 ms figure was measured idle; a unit test must not fail on a busy machine.)
                timings = []
                for _ in range(3):
                    started = time.perf_counter()
                    method(text)
                    timings.append(time.perf_counter() - started)
                assert min(timings) < 0.100, (name, method.__name__, text[:10], timings)


@pytest.mark.parametrize("where", ["query", "form", "cookie", "x-header", "basic"])
def test_the_admin_token_is_taken_only_from_the_authorization_bearer_header(client: FlaskClient,
                                                                            where: str) -> None:
    if where == "query":
        response = client.get(f"/api/deliveries?token={ADMIN}&access_token={ADMIN}")
    elif where == "form":
        response = client.post("/api/replays", data={"token": ADMIN, "access_token": ADMIN})
    elif where == "cookie":
        client.set_cookie("token", ADMIN)
        client.set_cookie("admin_token", ADMIN)
        response = client.get("/api/deliveries")
    elif where == "x-header":
        response = client.get("/api/deliveries", headers={"X-Admin-Token": ADMIN, "X-Api-Key": ADMIN})
    else:
        basic = base64.b64encode(f"admin:{ADMIN}".encode()).decode()
        response = client.get("/api/deliveries", headers={"Authorization": f"Basic {basic}"})
    assert response.status_code in (401, 403), where
    assert client.get("/api/deliveries", headers=admin_headers()).status_code == 200


def test_login_starts_a_fresh_session_no_fixation(client: FlaskClient) -> None:
    before_csrf = csrf(client)
    planted = client.get_cookie("runnerguard_session").value  # type: ignore[union-attr]
    response = client.post("/login", data={"token": ADMIN, "csrf_token": before_csrf, "next": "/"})
    assert response.status_code == 302
    after = client.get_cookie("runnerguard_session").value  # type: ignore[union-attr]
    assert after != planted
    assert csrf(client, "/") != before_csrf  # a new CSRF token too
    # The session the attacker planted (pre-login cookie) opens nothing.
    attacker = client.application.test_client()
    attacker.set_cookie("runnerguard_session", planted)
    assert attacker.get("/").status_code == 302


@pytest.fixture()
def gunicorn(redis_server: RedisServer, redis_client: redis.Redis) -> Iterator[int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNERGUARD_", "REDIS_"))}
    env.update({"GITHUB_WEBHOOK_SECRET": SECRET, "REDIS_URL": redis_server.url, "ADMIN_TOKEN": ADMIN,
                "WEB_CONCURRENCY": "1", "RUNNERGUARD_MAX_DELIVERY_AGE_HOURS": "0"})
    process = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "app:create_app()", "--bind",
                                f"127.0.0.1:{port}", "--config", "deploy/gunicorn.conf.py"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=0.2).close() is None, timeout=20,
                 what="gunicorn listening")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_content_length_with_transfer_encoding_smuggles_nothing_through_gunicorn(
        gunicorn: int, redis_client: redis.Redis) -> None:
    inner = signed_headers(BODY, "ping", guid="smuggled-1")
    smuggled = (b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\n" +
                b"".join(f"{k}: {v}\r\n".encode() for k, v in inner.items()) +
                f"Content-Length: {len(BODY)}\r\n\r\n".encode() + BODY)
    chunked = b"0\r\n\r\n" + smuggled
    outer = (b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
             b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"
             b"X-GitHub-Event: ping\r\nX-GitHub-Delivery: outer-1\r\nX-Hub-Signature-256: sha256=00\r\n\r\n" + chunked)
    answer = _raw(gunicorn, outer)
    assert answer.startswith(b"HTTP/1.1 4")  # refused (400 from gunicorn, or 401 unsigned), never served twice
    assert not redis_client.exists(keys.delivery("smuggled-1"))
    assert delivery_index.count(redis_client) == 0


def test_no_secret_reaches_any_log(app: Flask, client: FlaskClient, redis_client: redis.Redis, caplog,  # type: ignore[no-untyped-def]
                                   drain) -> None:
    wrong = "a-wrong-token-that-must-not-be-logged-either-000"
    formatter = JsonFormatter()
    with caplog.at_level(logging.DEBUG):
        login(client, wrong)
        login(client)
        client.get("/api/deliveries", headers=admin_headers(wrong))
        client.get("/api/deliveries", headers=admin_headers())
        body = dumps(job_payload("queued", id=71))
        client.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job"))
        client.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job", secret="nope"))
        drain()
    text = "\n".join(formatter.format(record) for record in caplog.records)
    assert caplog.records  # something was logged, so the check below can fail
    for secret in (ADMIN, SECRET, wrong, sign(SECRET, body)[7:], app.config["SECRET_KEY"]):
        assert secret not in text
    cookie = client.get_cookie("runnerguard_session")
    assert cookie is None or cookie.value not in text
    assert json.loads(text.splitlines()[0])  # the records are the JSON lines the service writes
