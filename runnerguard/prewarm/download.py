"""Streaming HTTP download into a .part file with Range resume and SHA-256 computed on the way."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import requests
import urllib3.exceptions

from runnerguard.domain.url_policy import is_loopback_url, transport_ok
from runnerguard.errors import RunnerguardError

# 4 MiB reads had the best median on loopback (bench/bench_prewarm.py, vs 256 KiB and 1 MiB): fewer trips through
# urllib3's Python code per byte; the writer queue below bounds memory to a few chunks
CHUNK_SIZE = 4 << 20
HASH_BLOCK = 4 << 20
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
USER_AGENT = "runnerguard-prewarm"
MAX_REDIRECTS = 5

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadError(RunnerguardError):
    """The server or the network did not give us the file; `retryable` when trying again may help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Downloaded:
    path: Path
    size: int
    sha256: str
    transferred: int  # bytes that crossed the network in this call (a resumed prefix is not counted)
    resumed_from: int


@dataclass
class _PartMeta:
    """What we knew about the file when the .part was started; a resume is only sound while it still holds."""

    url: str
    expected_sha256: str
    etag: str | None = None
    last_modified: str | None = None
    total: int | None = None


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _load_meta(part: Path) -> _PartMeta | None:
    try:
        raw = json.loads(_meta_path(part).read_text())
        return _PartMeta(**raw)
    except (OSError, ValueError, TypeError):
        return None


def _save_meta(part: Path, meta: _PartMeta) -> None:
    tmp = _meta_path(part).with_suffix(".tmp")
    tmp.write_text(json.dumps(meta.__dict__))
    os.replace(tmp, _meta_path(part))


def discard(part: Path) -> None:
    """Remove a .part and its metadata: after a checksum mismatch nothing of the download is kept."""
    for path in (part, _meta_path(part)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _hash_prefix(part: Path, length: int) -> hashlib._Hash:
    digest = hashlib.sha256()
    with part.open("rb") as fh:
        remaining = length
        while remaining:
            block = fh.read(min(HASH_BLOCK, remaining))
            if not block:
                raise DownloadError(f"{part.name} shrank while it was being hashed")
            digest.update(block)
            remaining -= len(block)
    return digest


class _HashingWriter:
    """Hashes and writes chunks on a second thread while the caller keeps reading the socket.

    hashlib and file writes release the GIL, so network reads overlap hashing: on a fast link the download is
    bounded by the slower of the two instead of their sum.
    """

    def __init__(self, fh: object, digest: hashlib._Hash) -> None:
        self._fh = fh
        self._digest = digest
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="prewarm-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        write = self._fh.write  # type: ignore[attr-defined]
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._digest.update(chunk)
                    view = memoryview(chunk)
                    while view:  # an unbuffered write may be short
                        view = view[write(view) :]
                except BaseException as exc:  # re-raised on the caller's thread by put()/close()
                    self._error = exc

    def put(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if not match:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def check_url(url: str, *, origin: str | None = None) -> None:
    """https only; plain http only to loopback, and a redirect to loopback only from a loopback URL: a remote server
    must not steer the runner host into its own local services. DownloadError (not retryable) otherwise."""
    loopback_ok = origin is None or is_loopback_url(origin)
    if not transport_ok(url, allow_loopback_http=loopback_ok) or (
            origin is not None and is_loopback_url(url) and not loopback_ok):
        what = "redirect to" if origin is not None else "URL"
        raise DownloadError(f"refused {what} {url[:200]!r}: https only (plain http to loopback only)",
                            retryable=False)


def _get(session: requests.Session, url: str, headers: dict[str, str]) -> requests.Response:
    """GET with redirects followed by hand, each target checked before it is asked."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        resp = session.get(current, headers=headers, stream=True, allow_redirects=False,
                           timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        if not resp.is_redirect:
            return resp
        target = urljoin(current, resp.headers.get("Location", ""))
        resp.close()
        check_url(target, origin=url)
        current = target
    raise DownloadError(f"more than {MAX_REDIRECTS} redirects from {url[:200]!r}", retryable=False)


def download(
    url: str,
    part: Path,
    *,
    expected_sha256: str,
    expected_size: int | None = None,
    session: requests.Session,
    before_body: Callable[[int | None, int | None], None] | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> Downloaded:
    """Fetch `url` into `part`, resuming a previous .part of the same url and checksum when the server allows.

    `before_body(bytes_still_to_fetch, total_size)` runs once the headers are in and may raise to refuse (disk
    fill, quota); either may be None when the server does not say.
    `progress(chunk_bytes)` is called per chunk (byte counts, lock renewal). The checksum is not compared here:
    the caller decides what a mismatch means. Raises DownloadError or requests exceptions; the .part stays for a
    later resume.
    """
    check_url(url)
    part.parent.mkdir(parents=True, exist_ok=True)
    meta = _load_meta(part)
    have = part.stat().st_size if part.exists() else 0
    usable = meta is not None and meta.url == url and meta.expected_sha256 == expected_sha256
    if have and usable and meta is not None:
        known_total = meta.total or expected_size
        if known_total is not None and have > known_total:
            usable = False
    if not usable:
        discard(part)
        have = 0
        meta = _PartMeta(url=url, expected_sha256=expected_sha256)
    assert meta is not None

    # hash the kept prefix before connecting: a server may drop a connection left idle for seconds
    prefix_digest = _hash_prefix(part, have) if have else None
    headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
        # If-Range makes the server send the whole new file (200) instead of a tail of a different one
        validator = meta.etag if meta.etag and not meta.etag.startswith("W/") else meta.last_modified
        if validator:
            headers["If-Range"] = validator

    with _get(session, url, headers) as resp:
        start = 0
        if resp.status_code == 416 and prefix_digest is not None:
            # the .part may already hold the whole file (a crash after the last byte); the caller's hash check decides
            return Downloaded(part, have, prefix_digest.hexdigest(), 0, have)
        if resp.status_code == 206 and have:
            parsed = _parse_content_range(resp.headers.get("Content-Range"))
            total = parsed[1] if parsed else None
            sizes_agree = total is None or (meta.total or expected_size or total) == total
            if parsed and parsed[0] == have and sizes_agree:
                start = have
            else:
                discard(part)  # the next attempt starts clean instead of repeating the same disagreement
                raise DownloadError(f"server answered Range bytes={have}- with {resp.headers.get('Content-Range')!r}")
        elif resp.status_code != 200:
            # 4xx will not change by asking again (except 408/429); 5xx might
            retry = resp.status_code >= 500 or resp.status_code in (408, 429)
            raise DownloadError(f"GET {url} answered HTTP {resp.status_code}", retryable=retry)
        # a 200 to a Range request means the server ignored it or the file changed: start over from this body
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding != "identity":
            # the pinned hash is of the file's bytes; a re-encoded body can neither be hashed nor resumed by offset
            raise DownloadError(f"server sent Content-Encoding {encoding!r} despite Accept-Encoding: identity",
                                retryable=False)

        length = resp.headers.get("Content-Length")
        body_len = int(length) if length and length.isdigit() else None
        total_size = start + body_len if body_len is not None else (expected_size if expected_size else None)
        if expected_size is not None and total_size is not None and total_size != expected_size:
            message = f"server offers {total_size} bytes, the policy expects {expected_size}"
            raise DownloadError(message, retryable=False)
        if before_body is not None:
            before_body(body_len if body_len is not None else (total_size - start if total_size else None), total_size)
        new_meta = _PartMeta(url, expected_sha256, resp.headers.get("ETag"), resp.headers.get("Last-Modified"),
                             total_size)
        if start == 0 or new_meta.etag != meta.etag:
            _save_meta(part, new_meta)

        digest = prefix_digest if start and prefix_digest is not None else hashlib.sha256()
        received = 0
        with part.open("r+b" if start else "wb", buffering=0) as fh:
            fh.seek(start)
            fh.truncate()
            writer = _HashingWriter(fh, digest)
            try:
                # raw.read skips requests' per-chunk generator; decode_content=False because we asked for identity
                while chunk := resp.raw.read(chunk_size, decode_content=False):
                    writer.put(chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
            except urllib3.exceptions.HTTPError as exc:
                # a cut connection; what arrived is on disk (close() below drains the queue) for the next resume
                message = f"connection lost after {start + received} bytes: {exc.__class__.__name__}"
                raise DownloadError(message) from exc
            finally:
                writer.close()
        size = start + received
        if body_len is not None and received != body_len:
            raise DownloadError(f"connection ended after {size} of {start + body_len} bytes")
        return Downloaded(part, size, digest.hexdigest(), received, start)
