"""Webhook deliveries: signed POSTs to a URL, recorded like GitHub's App hook delivery log."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from devtools.github_simulator.errors import not_found
from runnerguard.domain.signatures import sign

HOOK_ID = 424242


@dataclass
class SimDelivery:
    id: int
    guid: str
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    redelivery: bool
    delivered_at: float
    duration: float
    status_code: int
    status: str
    url: str
    secret: str = field(repr=False)
    body: bytes = field(repr=False)
    request_headers: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str | None = None


class Deliveries:
    """The App's delivery log, newest last in memory (listed newest first, like GitHub)."""

    def __init__(self, *, app_id: int, clock: Callable[[], float]) -> None:
        self.app_id = app_id
        self.clock = clock
        self.lock = threading.Lock()
        self.items: list[SimDelivery] = []
        self.ids = itertools.count(10_000_000_001)
        self.url: str | None = None
        self.secret: str | None = None

    def configure(self, url: str, secret: str) -> None:
        """The App's webhook URL and secret: where `deliver` and redeliveries go."""
        self.url, self.secret = url, secret

    def send(self, url: str, event: str, payload: Mapping[str, Any], secret: str, *, guid: str | None = None,
             redelivery: bool = False, timeout: float = 10.0) -> SimDelivery:
        """POST `payload`, signed with `secret`, and record the attempt (failed ones too)."""
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        return self._post(url, event, body, secret, guid=guid or str(uuid.uuid4()), redelivery=redelivery,
                          timeout=timeout)

    def _post(self, url: str, event: str, body: bytes, secret: str, *, guid: str, redelivery: bool,
              timeout: float) -> SimDelivery:
        payload = json.loads(body)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/simulator",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": guid,
            "X-GitHub-Hook-ID": str(HOOK_ID),
            "X-GitHub-Hook-Installation-Target-ID": str(self.app_id),
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-Hub-Signature-256": sign(secret, body),
        }
        started = time.monotonic()
        try:
            response = requests.post(url, data=body, headers=headers, timeout=timeout)
            status_code, response_headers = response.status_code, dict(response.headers)
            status = "OK" if response.ok else f"Invalid HTTP Response: {status_code}"
            response_body: str | None = response.text[:2000]
        except requests.RequestException as exc:
            status_code, status = 0, f"failed to connect: {type(exc).__name__}"
            response_headers, response_body = {}, None
        installation = payload.get("installation") if isinstance(payload, dict) else None
        repository = payload.get("repository") if isinstance(payload, dict) else None
        delivery = SimDelivery(
            id=next(self.ids), guid=guid, event=event,
            action=payload.get("action") if isinstance(payload, dict) else None,
            installation_id=installation.get("id") if isinstance(installation, dict) else None,
            repository_id=repository.get("id") if isinstance(repository, dict) else None,
            redelivery=redelivery, delivered_at=self.clock(), duration=round(time.monotonic() - started, 3),
            status_code=status_code, status=status, url=url, secret=secret, body=body,
            request_headers={k: v for k, v in headers.items() if k != "X-Hub-Signature-256"},
            response_headers=response_headers, response_body=response_body,
        )
        with self.lock:
            self.items.append(delivery)
        return delivery

    def get(self, delivery_id: int) -> SimDelivery:
        for delivery in self.items:
            if delivery.id == delivery_id:
                return delivery
        raise not_found()

    def redeliver(self, delivery_id: int) -> SimDelivery:
        """Send the same guid and body again (to the App's current URL and secret when configured)."""
        original = self.get(delivery_id)
        return self._post(self.url or original.url, original.event, original.body, self.secret or original.secret,
                          guid=original.guid, redelivery=True, timeout=10.0)

    def page(self, *, per_page: int, cursor: str | None, status: str | None) -> tuple[list[SimDelivery], str | None]:
        """One page, newest first, and the cursor of the next page (None on the last)."""
        items = sorted(self.items, key=lambda d: d.id, reverse=True)
        if status == "success":
            items = [d for d in items if 200 <= d.status_code < 300]
        elif status == "failure":
            items = [d for d in items if not 200 <= d.status_code < 300]
        if cursor:
            after = int(cursor.removeprefix("v1_"))
            items = [d for d in items if d.id < after]
        page = items[:per_page]
        return page, (f"v1_{page[-1].id}" if len(items) > per_page else None)
