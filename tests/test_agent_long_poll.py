"""The long poll on a real threaded HTTP server: it answers as soon as work comes, 204 after `wait`, and a process
holds at most its cap of polls (the rest answer at once), so intake keeps its threads."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from werkzeug.serving import BaseWSGIServer, make_server

from app import create_app
from config import Settings
from runnerguard.store import host_tokens, work
from tests.helpers import dumps, signed_headers

HOST = "laptop-extra"


@pytest.fixture()
def server(settings: Settings, redis_client: redis.Redis) -> Iterator[BaseWSGIServer]:
    app = create_app(settings.with_overrides(agent_long_polls=2))
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    thread.join(timeout=10)


@pytest.fixture()
def token(redis_client: redis.Redis) -> str:
    value = host_tokens.add(redis_client, HOST, now=time.time())
    assert value is not None
    return value


def call(httpd: BaseWSGIServer, method: str, path: str, *, token: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any, float]:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", httpd.server_port, timeout=40)
    conn.request(method, path, body=body, headers={"Authorization": f"Bearer {token}", "X-Runnerguard-Host": HOST,
                                                   **(headers or {})})
    answer = conn.getresponse()
    raw = answer.read()
    conn.close()
    return answer.status, dict(answer.getheaders()), json.loads(raw) if raw else None, time.monotonic() - started


def test_a_long_poll_answers_as_soon_as_work_is_created(server: BaseWSGIServer, token: str,
                                                        redis_client: redis.Redis) -> None:
    with ThreadPoolExecutor(1) as pool:
        poll = pool.submit(call, server, "GET", "/agent/v1/work?wait=20", token=token)
        time.sleep(0.5)
        assert not poll.done()
        work.create(redis_client, HOST, job_id=5, kind="cache", name="vosk", now=time.time())
        status, _headers, body, took = poll.result(timeout=10)
    assert status == 200 and [i["job_id"] for i in body["items"]] == [5]
    assert took < 3  # woken by the item, not by the end of the wait


def test_a_long_poll_with_nothing_to_do_answers_204_after_wait(server: BaseWSGIServer, token: str) -> None:
    status, headers, body, took = call(server, "GET", "/agent/v1/work?wait=2", token=token)
    assert status == 204 and body is None and "Retry-After" not in headers
    assert 1.9 <= took < 5


def test_polls_beyond_the_processes_cap_answer_at_once_and_intake_stays_fast(server: BaseWSGIServer, token: str,
                                                                             redis_client: redis.Redis) -> None:
    with ThreadPoolExecutor(4) as pool:
        held = [pool.submit(call, server, "GET", "/agent/v1/work?wait=6", token=token) for _ in range(2)]
        time.sleep(0.5)
        status, headers, _body, took = call(server, "GET", "/agent/v1/work?wait=6", token=token)
        assert status == 204 and headers.get("Retry-After") == "5" and took < 1
        body = dumps({"zen": "Keep it logically awesome.", "hook_id": 1})
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        conn.request("POST", "/webhooks/github", body=body, headers=signed_headers(body, "ping"))
        assert conn.getresponse().status == 200
        assert time.monotonic() - started < 1  # the webhook did not wait for the polls
        assert all(not f.done() for f in held)
        work.create(redis_client, HOST, job_id=6, kind="cache", name="vosk", now=time.time())
        answers = [f.result(timeout=10) for f in held]
    # one poll takes the item; the other keeps waiting until its own wait ends
    assert sorted(a[0] for a in answers) == [200, 204]


def test_a_chunked_body_over_64_kib_is_refused(server: BaseWSGIServer, token: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    big = json.dumps({"agent_version": "x" * (70 * 1024)}).encode()
    conn.request("POST", "/agent/v1/report", body=iter([big[:40_000], big[40_000:]]),
                 headers={"Authorization": f"Bearer {token}", "X-Runnerguard-Host": HOST,
                          "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                 encode_chunked=True)
    assert conn.getresponse().status == 413
