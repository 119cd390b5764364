"""The loopback HTTP file server the prewarm tests and benchmark download from (Range, ETag, cuts), and its tests."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import io
import os
import re
import socket
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import zstandard

from runnerguard.prewarm.specs import CacheSpec

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it."""

    method: str
    path: str
    range: str | None
    if_range: str | None
    status: int


class LoopbackServer:
    """A ThreadingHTTPServer on 127.0.0.1 serving files, with switches for the failure modes the tests need.

    `honour_range=False` answers every Range request with the whole file (200); `cut_after=N` makes the next body
    stop after N bytes and drop the connection; `throttle` sleeps between 64 KiB chunks; `requests` records all.
    """

    def __init__(self) -> None:
        self.files: dict[str, Path] = {}
        self.seen: list[Seen] = []
        self.honour_range = True
        self.send_etag = True
        self.cut_after: int | None = None
        self.throttle = 0.0
        self.body_started = threading.Event()
        self._lock = threading.Lock()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        # a short poll interval: shutdown() waits for it, once per test
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), name="loopback-http",
                                        daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def add(self, file: Path, path: str | None = None) -> str:
        path = path or f"/{file.name}"
        self.files[path] = file
        return self.base + path

    def gets(self, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == "GET" and (path is None or s.path == path)]

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def _take_cut(self) -> int | None:
        with self._lock:
            cut, self.cut_after = self.cut_after, None
            return cut

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, *, body: bool) -> None:
                rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
                file = server.files.get(self.path)
                if file is None or not file.exists():
                    server._record(Seen(self.command, self.path, rng, if_range, 404))
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                st = file.stat()
                size, etag = st.st_size, f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
                start, end, status = 0, size - 1, 200
                match = _RANGE.fullmatch(rng or "")
                if match and server.honour_range and (if_range is None or if_range == etag):
                    start = int(match.group(1))
                    end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
                    status = 206
                    if start >= size:
                        server._record(Seen(self.command, self.path, rng, if_range, 416))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                server._record(Seen(self.command, self.path, rng, if_range, status))
                length = end - start + 1
                self.send_response(status)
                self.send_header("Content-Length", str(length))
                self.send_header("Accept-Ranges", "bytes")
                if server.send_etag:
                    self.send_header("ETag", etag)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if body:
                    server.body_started.set()
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        self._body(file, start, length)

            def _body(self, file: Path, start: int, length: int) -> None:
                cut = server._take_cut()
                with file.open("rb") as fh:
                    if cut is None and not server.throttle:
                        # sendfile: the benchmark must measure the client, not a Python copy loop in the server
                        self.wfile.flush()
                        offset, left = start, length
                        while left > 0:
                            sent = os.sendfile(self.connection.fileno(), fh.fileno(), offset, left)
                            if sent == 0:
                                break
                            offset, left = offset + sent, left - sent
                        return
                    fh.seek(start)
                    left = length if cut is None else min(cut, length)
                    while left > 0:
                        block = fh.read(min(65536, left))
                        if not block:
                            break
                        self.wfile.write(block)
                        left -= len(block)
                        if server.throttle:
                            time.sleep(server.throttle)
                    self.wfile.flush()
                if cut is not None:
                    # a dropped connection, not a clean end: the client must notice the missing bytes
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

        return Handler


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def make_zip(path: Path, members: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # S_IFLNK: how Info-ZIP stores a symlink
            zf.writestr(info, target)
    return path


TarHook = Callable[[tarfile.TarFile], None]


def make_tar(path: Path, members: dict[str, bytes], *, kind: str = "tar.gz", extra: TarHook | None = None) -> Path:
    """A tar.gz or tar.zst of `members`; `extra(tf)` may add hostile members (links, devices, odd names)."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
        if extra is not None:
            extra(tf)
    if kind == "tar.zst":

        path.write_bytes(zstandard.ZstdCompressor(level=3).compress(plain.getvalue()))
    else:

        path.write_bytes(gzip.compress(plain.getvalue(), compresslevel=1))
    return path


def tar_member(name: str, kind: bytes, *, linkname: str = "", data: bytes = b"") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


@pytest.fixture()
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


def test_range_request_gets_the_tail_with_content_range(server: LoopbackServer, tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 40)
    url = server.add(blob)
    resp = requests.get(url, headers={"Range": "bytes=1000-"}, timeout=5)
    assert resp.status_code == 206
    assert resp.content == blob.read_bytes()[1000:]
    assert resp.headers["Content-Range"] == "bytes 1000-10239/10240"


def test_if_range_with_a_stale_etag_gets_the_whole_file(server: LoopbackServer, tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"x" * 5000)
    url = server.add(blob)
    resp = requests.get(url, headers={"Range": "bytes=10-", "If-Range": '"stale"'}, timeout=5)
    assert resp.status_code == 200
    assert len(resp.content) == 5000


def test_cut_drops_the_connection_after_n_bytes_once(server: LoopbackServer, tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(300_000))
    url = server.add(blob)
    server.cut_after = 100_000
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url, timeout=5).content  # noqa: B018 - reading the body is the point
    assert requests.get(url, timeout=5).content == blob.read_bytes()
    assert len(server.gets("/blob.bin")) == 2


def test_unknown_path_is_404_and_recorded(server: LoopbackServer) -> None:
    assert requests.get(server.base + "/nope", timeout=5).status_code == 404
    assert [s.status for s in server.gets("/nope")] == [404]


def cache_spec(root: Path, url: str, archive: Path, *, unpack: str, name: str = "model", **table: Any) -> CacheSpec:
    """A CacheSpec built the way the policy loader builds one: through `from_mapping`, so validation runs too."""
    return CacheSpec.from_mapping({
        "name": name, "url": url, "sha256": table.pop("sha256", None) or sha256_file(archive),
        "dest": str(root / name), "unpack": unpack, "pools": ["laptop"], **table,
    })
