"""A loopback web tier that speaks interfaces.md section 2 exactly (auth rules included), for the agent's tests."""

from __future__ import annotations

import hmac
import http.server
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 64 << 10
DONE_KEYS = frozenset({"state", "bytes", "seconds", "error"})
REPORT_KEYS = frozenset({"agent_version", "uptime", "load", "memory", "disk", "runner", "cleanups", "cache_answers"})
_DONE_PATH = re.compile(r"/agent/v1/work/(?P<id>[^/]+)/done")


@dataclass
class HostState:
    token: str
    config: dict[str, Any]
    queue: list[dict[str, Any]] = field(default_factory=list)
    leased: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    reports: list[dict[str, Any]] = field(default_factory=list)
    revoked: bool = False


class AgentWebTier:
    """Host tokens, work queues with long poll, done and report, with 401/403/404/400/413 as section 2 says."""

    def __init__(self) -> None:
        self.hosts: dict[str, HostState] = {}
        self.calls: list[tuple[str, str, int]] = []
        self.full_retry_after: int | None = None  # all long-poll slots taken: 204 at once with Retry-After
        self.cond = threading.Condition()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def add_host(self, name: str, token: str, config: dict[str, Any]) -> HostState:
        self.hosts[name] = HostState(token, config)
        return self.hosts[name]

    def enqueue(self, host: str, item: dict[str, Any]) -> None:
        with self.cond:
            self.hosts[host].queue.append({"lease_seconds": 600, **item})
            self.cond.notify_all()

    def wait_for(self, what: Any, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not (got := what()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting on the agent web tier")
                self.cond.wait(min(left, 0.05))  # also sees state outside the tier (the agent's)
        return got

    def statuses(self, path: str) -> list[int]:
        return [status for _m, p, status in self.calls if p == path]

    def start(self) -> AgentWebTier:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _auth(self, headers: Any) -> tuple[int, HostState | None, str]:
        """(status, host, name): 401 for a missing/wrong/revoked token, 403 when it names another host."""
        raw = headers.get("Authorization", "")
        token = raw[len("Bearer "):] if raw.startswith("Bearer ") else ""
        owner = next((n for n, h in self.hosts.items() if token and hmac.compare_digest(h.token, token)), None)
        if owner is None or self.hosts[owner].revoked:
            return 401, None, ""
        if headers.get("X-Runnerguard-Host", "") != owner:
            return 403, None, ""
        return 200, self.hosts[owner], owner

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        tier = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any] | None = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", "Bearer")
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with tier.cond:
                    tier.calls.append((self.command, urlsplit(self.path).path, status))
                    tier.cond.notify_all()

            def _body(self, allowed: frozenset[str]) -> dict[str, Any] | None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.close_connection = True
                    self._send(413, {"error": "body over 64 KiB"})
                    return None
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except ValueError:
                    self._send(400, {"error": "not JSON"})
                    return None
                if not isinstance(body, dict):
                    self._send(400, {"error": "not an object"})
                    return None
                unknown = sorted(set(body) - allowed)
                if unknown:
                    self._send(400, {"error": f"unknown keys: {', '.join(unknown)}"})
                    return None
                return body

            def do_GET(self) -> None:
                status, host, _name = tier._auth(self.headers)
                if host is None:
                    self._send(status, {"error": "unauthorized" if status == 401 else "forbidden"})
                    return
                parts = urlsplit(self.path)
                if parts.path == "/agent/v1/config":
                    self._send(200, host.config)
                elif parts.path == "/agent/v1/work" and tier.full_retry_after is not None:
                    self.send_response(204)
                    self.send_header("Retry-After", str(tier.full_retry_after))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    with tier.cond:
                        tier.calls.append((self.command, parts.path, 204))
                        tier.cond.notify_all()
                elif parts.path == "/agent/v1/work":
                    raw = parse_qs(parts.query).get("wait", ["25"])[0]
                    if not raw.isdigit() or int(raw) > 30:
                        self._send(400, {"error": "wait must be 0-30"})
                        return
                    deadline = time.monotonic() + int(raw)
                    with tier.cond:
                        while not host.queue and time.monotonic() < deadline:
                            tier.cond.wait(deadline - time.monotonic())
                        items = list(host.queue)
                        host.queue.clear()
                        host.leased.update({i["id"]: i for i in items})
                    if items:
                        self._send(200, {"items": items})
                    else:
                        self._send(204)
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                status, host, name = tier._auth(self.headers)
                if host is None:
                    self.close_connection = True
                    self._send(status, {"error": "unauthorized" if status == 401 else "forbidden"})
                    return
                path = urlsplit(self.path).path
                done = _DONE_PATH.fullmatch(path)
                if done:
                    item_id = done.group("id")
                    owner = next((n for n, h in tier.hosts.items() if item_id in h.leased or item_id in h.done), None)
                    if owner is None:
                        self._body(DONE_KEYS)
                        self._send(404, {"error": "no such item"})
                        return
                    if owner != name:
                        self._body(DONE_KEYS)
                        self._send(403, {"error": "another host's item"})
                        return
                    body = self._body(DONE_KEYS)
                    if body is None:
                        return
                    with tier.cond:
                        host.done[item_id] = body
                        host.leased.pop(item_id, None)
                    self._send(200, {"ok": True})
                elif path == "/agent/v1/report":
                    body = self._body(REPORT_KEYS)
                    if body is None:
                        return
                    with tier.cond:
                        host.reports.append(body)
                    self._send(200, {"ok": True})
                else:
                    self._send(404, {"error": "not found"})

        return Handler


@contextmanager
def web_tier() -> Iterator[AgentWebTier]:
    tier = AgentWebTier().start()
    try:
        yield tier
    finally:
        tier.stop()
