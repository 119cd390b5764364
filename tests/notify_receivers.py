"""Loopback receivers for the notifier tests: a Slack-style incoming webhook and a webhook that verifies signatures.

Both are real HTTP servers (werkzeug, threaded) on 127.0.0.1; the signature check here is written independently of
runnerguard's, as a receiver would write it from the README.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask, Response, request
from werkzeug.serving import make_server

OPS = "octo-org/ops"  # the repository the github-issue notifier writes its outage issues in
# One notifier of each kind, as a policy file declares them (the tests set the environment they name).
NOTIFIERS = f"""
[[notify]]
kind = "slack"
name = "slack"
url_env = "SLACK_WEBHOOK_URL"

[[notify]]
kind = "webhook"
name = "ops"
url_env = "OPS_WEBHOOK_URL"
secret_env = "OPS_WEBHOOK_SECRET"

[[notify]]
kind = "github-issue"
name = "issues"
repo = "{OPS}"
"""

WEBHOOK_SECRET = "ops-webhook-secret-0123456789"


@dataclass
class Receiver:
    """Records every POST; answers the next status of `statuses` (then 200), `location` with a 3xx."""

    secret: str = ""
    statuses: list[int] = field(default_factory=list)
    location: str = ""
    answer: str = "nope"  # the body of a refusal
    received: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # why a POST was refused (bad signature, repeat)
    deliveries: list[str] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)  # the delivery id of every POST, answered or not
    url: str = ""

    def bodies(self) -> list[dict[str, Any]]:
        return [r["json"] for r in self.received]

    def wsgi(self) -> Flask:
        app = Flask("notify_receiver")

        @app.post("/hook/<path:rest>")
        def hook(rest: str) -> Response:
            body = request.get_data()
            entry = {"path": rest, "headers": dict(request.headers), "body": body, "json": json.loads(body)}
            status = self.statuses.pop(0) if self.statuses else 200
            self.attempts.append(request.headers.get("X-Runnerguard-Delivery", ""))
            if self.secret:
                expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
                given = request.headers.get("X-Runnerguard-Signature-256", "")
                if not hmac.compare_digest(expected, given):
                    self.refused.append("bad signature")
                    return Response("bad signature", status=401)
            delivery = request.headers.get("X-Runnerguard-Delivery", "")
            if status < 300:
                if self.secret and delivery in self.deliveries:
                    self.refused.append(f"repeat {delivery}")
                    return Response("already had it", status=200)
                self.deliveries.append(delivery)
                self.received.append(entry)
            headers = {"Location": self.location} if self.location and 300 <= status < 400 else {}
            return Response("ok" if status < 300 else self.answer, status=status, headers=headers)

        return app


def serve(receiver: Receiver) -> Iterator[Receiver]:
    server = make_server("127.0.0.1", 0, receiver.wsgi(), threaded=True)
    receiver.url = f"http://127.0.0.1:{server.server_port}/hook/services/T000/B000/secretpart"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def slack_receiver() -> Iterator[Receiver]:
    yield from serve(Receiver())


@pytest.fixture()
def ops_receiver() -> Iterator[Receiver]:
    yield from serve(Receiver(secret=WEBHOOK_SECRET))


@pytest.fixture()
def other_host() -> Iterator[Receiver]:
    """Where a redirect would send a message: it must never receive one."""
    yield from serve(Receiver())
