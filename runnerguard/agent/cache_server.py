"""The job's side of the cache: `GET /caches/<name>?wait=SECONDS` on loopback only, answered by the broker."""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from runnerguard.agent.broker import CacheBroker
from runnerguard.errors import InvalidInput
from runnerguard.prewarm.specs import CacheSpec

DEFAULT_WAIT = 900.0
MAX_WAIT = 3600.0
_PATH = re.compile(r"/caches/(?P<name>[A-Za-z0-9._-]{1,64})")
_WAIT = re.compile(r"\d{1,5}(?:\.\d{1,3})?")

Caches = Callable[[], Mapping[str, CacheSpec]]


def parse_wait(values: list[str] | None) -> float:
    """`wait` from the query: seconds in [0, 3600], default 900; anything else is a 400."""
    if not values:
        return DEFAULT_WAIT
    if len(values) != 1 or not _WAIT.fullmatch(values[0]):
        raise InvalidInput("wait must be a number of seconds between 0 and 3600")
    wait = float(values[0])
    if wait > MAX_WAIT:
        raise InvalidInput(f"wait must be at most {MAX_WAIT:.0f} seconds")
    return wait


def check_loopback(host: str) -> None:
    """Refuse at start anything but a loopback address: any job on this host may ask, nobody else."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InvalidInput(f"the agent's cache server listens on loopback only, not {host!r}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class CacheServer:
    """A ThreadingHTTPServer: each waiting job holds one thread, parked on the broker's event (no busy wait)."""

    def __init__(self, host: str, port: int, *, broker: CacheBroker, caches: Caches) -> None:
        check_loopback(host)
        self.broker = broker
        self.caches = caches
        self._httpd = (_Server6 if ":" in host else _Server)((host, port), self._handler())
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._httpd.server_address[0])
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    def start(self) -> CacheServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.2,), name="agent-cache-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        """(status, body) for one GET; the HTTP handler only writes it out."""
        parts = urlsplit(path)
        if parts.path == "/ping":
            return 200, {"ok": True}
        match = _PATH.fullmatch(parts.path)
        spec = self.caches().get(match.group("name")) if match else None
        if spec is None:
            # the same answer for a name that is malformed or merely undeclared: nothing to probe
            return 404, {"error": "no such cache in this host's policy"}
        try:
            wait = parse_wait(parse_qs(parts.query, keep_blank_values=True).get("wait"))
        except InvalidInput as exc:
            return 400, {"error": str(exc)}
        got = self.broker.ask(spec, wait)
        body: dict[str, Any] = {"name": spec.name, "state": got.state, "waited_s": round(got.waited_s, 3)}
        if got.state != "ready":
            if got.error:
                body["error"] = got.error[:500]
            return 504, body
        return 200, {**body, "path": str(spec.dest), "sha256": spec.sha256}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: with Nagle on, the client's delayed ACK adds ~40 ms to each
            disable_nagle_algorithm = True
            server_version = "runnerguard-agent"
            sys_version = ""

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per cache answer would drown the agent's own log

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                status, body = server.answer(self.path)
                self._send(status, body)

            def _refuse(self) -> None:
                self.close_connection = True  # its body is never read: the connection cannot carry another request
                self._send(405, {"error": "only GET"})

            do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

        return Handler
