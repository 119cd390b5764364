"""An open-loop loopback client for bench_wrk.py: one request every 1/rate s, latency from the scheduled send time.

wrk2 (constant-rate wrk) is not in Debian and wrk's own `delay()` makes a closed loop (each connection waits for
its answer, then the delay), which hides queueing. This client sends each request when its time comes on an idle
keep-alive connection (opening another when all are busy), so a slow answer delays nothing else and still counts
from when it should have been sent. Requests are built before the clock starts; a send is one `sendall` of ready
bytes and an answer one or two `recv`s, so at 1,000/s it costs a few percent of one core.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Sequence


def build_requests(bodies: Sequence[tuple[bytes, str]], count: int, tag: str) -> list[bytes]:
    """`count` raw HTTP/1.1 requests, each with its own delivery id, cycling through the signed bodies."""
    out = []
    for i in range(count):
        body, signature = bodies[i % len(bodies)]
        head = (f"POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"X-GitHub-Event: workflow_job\r\nX-GitHub-Delivery: {tag}-{i}\r\n"
                f"X-Hub-Signature-256: {signature}\r\nContent-Length: {len(body)}\r\n\r\n")
        out.append(head.encode() + body)
    return out


class _Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.sent_for: float | None = None  # the scheduled time of the request in flight

    def answer(self) -> tuple[int, bool] | None:
        """(status, keep-alive) once a whole answer is buffered, else None."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self.buffer[:end].decode("latin-1").lower()
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name == "content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return None
        self.buffer = self.buffer[end + 4 + length:]
        return int(head.split(" ", 2)[1]), "connection: close" not in head


def paced(port: int, requests: Sequence[bytes], rate: float) -> tuple[list[float], int]:
    """Send `requests` at `rate` per second: (latencies in seconds, answers that were not 2xx)."""
    selector = selectors.DefaultSelector()
    idle: list[_Conn] = []
    latencies: list[float] = []
    bad = 0
    start = time.perf_counter() + 0.05
    sent = 0
    in_flight = 0
    while sent < len(requests) or in_flight:
        due = start + sent / rate
        now = time.perf_counter()
        if sent < len(requests) and now >= due:
            conn = idle.pop() if idle else None
            try:
                if conn is None:
                    raise ConnectionResetError
                conn.sock.sendall(requests[sent])
            except OSError:  # never used, or closed by the server while idle (keep-alive timeout): a fresh one
                if conn is not None:
                    selector.unregister(conn.sock)
                    conn.sock.close()
                conn = _Conn(port)
                selector.register(conn.sock, selectors.EVENT_READ, conn)
                conn.sock.sendall(requests[sent])
            conn.sent_for = due
            sent += 1
            in_flight += 1
            continue
        timeout = max(0.0, due - now) if sent < len(requests) else 1.0
        for key, _events in selector.select(timeout):
            conn = key.data
            chunk = conn.sock.recv(65536)
            if not chunk:
                selector.unregister(conn.sock)
                conn.sock.close()
                if conn in idle:
                    idle.remove(conn)
                if conn.sent_for is not None:
                    bad += 1
                    in_flight -= 1
                continue
            conn.buffer += chunk
            done = conn.answer()
            if done is None:
                continue
            status, keep = done
            latencies.append(time.perf_counter() - (conn.sent_for or 0.0))
            bad += not 200 <= status < 300
            in_flight -= 1
            conn.sent_for = None
            if keep:
                idle.append(conn)
            else:
                selector.unregister(conn.sock)
                conn.sock.close()
    for key in list(selector.get_map().values()):
        key.data.sock.close()
    return latencies, bad
