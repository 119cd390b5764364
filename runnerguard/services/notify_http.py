"""Send a Slack message or a signed webhook: one POST, no redirects followed, an answer a person can read.

The URL of a Slack incoming webhook is itself the secret: no error, log line or answer here ever repeats it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import orjson
import requests

from config.notify_env import NotifyTarget
from config.notify_policy import SLACK, WEBHOOK
from runnerguard.domain import notify_bodies as bodies
from runnerguard.domain.notices import Notice

TIMEOUT = (3.05, 10.0)
USER_AGENT = "runnerguard-notify/1"
DELIVERY_NAMESPACE = uuid.UUID("6f1f2a40-8f4e-4b8e-9a51-0f3f7c2d9b10")


@dataclass(frozen=True)
class Answer:
    """What a notifier answered: `ok`, the HTTP status (None without an answer), and whether a retry may help."""

    ok: bool
    status: int | None
    detail: str
    retry: bool = False

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.detail}" if self.status is not None else self.detail


def delivery_id(notice_id: str, notifier: str) -> str:
    """The same for every attempt of one notice to one notifier, so a receiver can drop a repeat."""
    return str(uuid.uuid5(DELIVERY_NAMESPACE, f"{notice_id}/{notifier}"))


def _clip(text: str) -> str:
    return " ".join(text.split())[:200]


def post(url: str, body: bytes, headers: dict[str, str], *, session: requests.Session | None = None) -> Answer:
    sender = session or requests
    try:
        # allow_redirects=False: a redirect could send a signed body (or Slack's secret path) to another host.
        response = sender.post(url, data=body, headers={"Content-Type": "application/json",
                                                        "User-Agent": USER_AGENT, **headers},
                               timeout=TIMEOUT, allow_redirects=False)
    except requests.Timeout:
        return Answer(False, None, "no answer in time (timeout)", retry=True)
    except requests.RequestException as exc:
        return Answer(False, None, f"could not connect ({type(exc).__name__})", retry=True)
    status = response.status_code
    detail = _clip(response.text or response.reason or "")
    if 200 <= status < 300:
        return Answer(True, status, detail or "ok")
    if 300 <= status < 400:
        return Answer(False, status, "answered with a redirect, which runnerguard does not follow: "
                      "configure the final URL")
    return Answer(False, status, detail or "refused", retry=status == 429 or status >= 500)


def send(target: NotifyTarget, notice: Notice, *, notice_id: str, test: bool = False,
         session: requests.Session | None = None) -> Answer:
    """Deliver one notice to a slack or webhook notifier."""
    if target.kind == SLACK:
        return post(target.url, orjson.dumps(bodies.slack_body(notice, test=test)), {}, session=session)
    if target.kind == WEBHOOK:
        delivery = delivery_id(notice_id, target.name)
        payload = bodies.webhook_payload(notice, delivery_id=delivery, notifier=target.name, test=test)
        body = orjson.dumps(payload)
        headers = {bodies.DELIVERY_HEADER: delivery, bodies.EVENT_HEADER: payload["event"],
                   bodies.SIGNATURE_HEADER: bodies.signature(target.secret, body)}
        return post(target.url, body, headers, session=session)
    raise ValueError(f"{target.kind} is not an HTTP notifier")
