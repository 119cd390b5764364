"""A Redis that does not answer costs the intake one request's timeouts, not every request's: the rest get their
503 at once until a single trial finds Redis back (runnerguard/web/redis_gate.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from app import create_app
from config import Settings
from runnerguard.store import keys
from runnerguard.web.redis_gate import RedisGate
from tests.helpers import dumps, signed_headers
from tests.test_timeline import job_payload


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_failure_shuts_the_gate_then_one_trial_at_a_time_goes_through() -> None:
    clock = Clock()
    gate = RedisGate(hold=0.5, clock=clock)
    assert gate.admit() and gate.admit()  # closed: everyone goes to Redis
    gate.failed(redis.TimeoutError("Timeout reading from socket"))
    assert gate.shut and not gate.admit()
    clock.now += 0.6
    assert gate.admit()  # the one trial
    assert not gate.admit()  # while it runs, the others are answered at once
    gate.failed(redis.ConnectionError("Timeout connecting to server"))
    assert not gate.admit()  # failed again: shut for another hold
    clock.now += 0.6
    assert gate.admit()
    gate.succeeded()
    assert not gate.shut and gate.admit() and gate.admit()


def test_a_refusal_redis_answered_does_not_shut_the_gate_and_reopens_it() -> None:
    clock = Clock()
    gate = RedisGate(hold=0.5, clock=clock)
    gate.failed(redis.exceptions.ReadOnlyError("READONLY You can't write against a read only replica."))
    assert not gate.shut
    gate.failed(redis.ConnectionError("Connection refused"))
    clock.now += 0.6
    assert gate.admit()
    gate.failed(redis.exceptions.OutOfMemoryError("OOM"))  # reachable, only full
    assert not gate.shut
    gate.failed(redis.ConnectionError("Connection refused"))
    clock.now += 0.6
    assert gate.admit()
    gate.failed(ValueError("a bug in the trial"))  # the trial ends whatever it raised: never stuck shut
    assert gate.admit()


@pytest.fixture()
def silent_redis() -> Iterator[int]:
    """A port that takes connections and never answers: a primary whose host vanished without a reset."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def post(app, body: bytes, headers: dict[str, str]) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    began = time.monotonic()
    response = app.test_client().post("/webhooks/github", data=body, headers=headers)
    return response.status_code, time.monotonic() - began


def test_only_the_first_request_waits_for_a_silent_redis(settings: Settings, silent_redis: int) -> None:
    app = create_app(settings.with_overrides(redis_url=f"redis://127.0.0.1:{silent_redis}/0"))
    body = dumps(job_payload("queued"))
    status, took = post(app, body, signed_headers(body, "workflow_job"))
    assert status == 503 and took >= 1.5  # it waited out the socket timeout
    status, took = post(app, body, signed_headers(body, "workflow_job"))
    assert status == 503 and took < 0.5  # answered at once
    bad = signed_headers(body, "workflow_job", secret="not-the-secret")
    status, took = post(app, body, bad)
    assert status == 401 and took < 0.5  # its rejection counter is skipped, not waited for
    assert app.extensions["runnerguard"].intake.gate.shut  # (after the hold, one trial: the test above)


def test_the_gate_opens_as_soon_as_redis_answers(settings: Settings, redis_client: redis.Redis) -> None:
    app = create_app(settings)
    gate = app.extensions["runnerguard"].intake.gate
    gate.failed(redis.ConnectionError("the primary went away"))
    body = dumps(job_payload("queued"))
    assert post(app, body, signed_headers(body, "workflow_job", guid="g-shut"))[0] == 503
    time.sleep(gate.hold + 0.1)
    assert post(app, body, signed_headers(body, "workflow_job", guid="g-back"))[0] == 202
    assert not gate.shut
    assert redis_client.exists(keys.delivery("g-back")) and not redis_client.exists(keys.delivery("g-shut"))
