"""download(): streaming into a .part, SHA-256 on the way, and when a Range resume is (not) sound."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from runnerguard.prewarm.download import DownloadError, download
from tests.test_prewarm_server import LoopbackServer, sha256_file


@pytest.fixture()
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture()
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.fixture()
def blob(tmp_path: Path) -> Path:
    path = tmp_path / "model.bin"
    path.write_bytes(os.urandom(500_000))
    return path


def test_hash_is_computed_while_streaming(server: LoopbackServer, session: requests.Session, blob: Path,
                                          tmp_path: Path) -> None:
    part = tmp_path / "tmp" / "model.part"
    got = download(server.add(blob), part, expected_sha256="x", session=session, chunk_size=64 << 10)
    assert (got.sha256, got.size, got.transferred, got.resumed_from) == (sha256_file(blob), 500_000, 500_000, 0)
    assert part.read_bytes() == blob.read_bytes()


def test_resume_without_etag_relies_on_the_size_and_hashes_the_kept_prefix(
    server: LoopbackServer, session: requests.Session, blob: Path, tmp_path: Path
) -> None:
    server.send_etag, server.cut_after = False, 123_456
    url, part, sha = server.add(blob), tmp_path / "model.part", sha256_file(blob)
    with pytest.raises(DownloadError, match="connection lost"):
        download(url, part, expected_sha256=sha, session=session)

    got = download(url, part, expected_sha256=sha, session=session)

    last = server.gets()[-1]
    assert (last.range, last.if_range, last.status) == ("bytes=123456-", None, 206)
    assert (got.sha256, got.resumed_from, got.transferred) == (sha, 123_456, 500_000 - 123_456)


def test_part_of_another_url_or_checksum_is_not_resumed(
    server: LoopbackServer, session: requests.Session, blob: Path, tmp_path: Path
) -> None:
    url, part = server.add(blob), tmp_path / "model.part"
    server.cut_after = 100_000
    with pytest.raises(DownloadError):
        download(url, part, expected_sha256="old-pin", session=session)

    got = download(url, part, expected_sha256=sha256_file(blob), session=session)

    assert server.gets()[-1].range is None
    assert got.resumed_from == 0 and got.sha256 == sha256_file(blob)


def test_complete_part_is_recognised_from_a_416(
    server: LoopbackServer, session: requests.Session, blob: Path, tmp_path: Path
) -> None:
    url, part, sha = server.add(blob), tmp_path / "model.part", sha256_file(blob)
    download(url, part, expected_sha256=sha, session=session)  # as if the worker died right after the last byte

    again = download(url, part, expected_sha256=sha, session=session)

    assert server.gets()[-1].status == 416
    assert (again.sha256, again.transferred) == (sha, 0)


def test_size_other_than_the_pinned_one_is_refused_before_the_body(
    server: LoopbackServer, session: requests.Session, blob: Path, tmp_path: Path
) -> None:
    with pytest.raises(DownloadError, match="policy expects 400000") as caught:
        download(server.add(blob), tmp_path / "m.part", expected_sha256="x", expected_size=400_000, session=session)
    assert caught.value.retryable is False
    assert not (tmp_path / "m.part").exists()


def test_before_body_can_refuse_with_nothing_written(
    server: LoopbackServer, session: requests.Session, blob: Path, tmp_path: Path
) -> None:
    seen: list[tuple[int | None, int | None]] = []

    def refuse(remaining: int | None, total: int | None) -> None:
        seen.append((remaining, total))
        raise OSError("no room")

    with pytest.raises(OSError, match="no room"):
        download(server.add(blob), tmp_path / "m.part", expected_sha256="x", session=session, before_body=refuse)
    assert seen == [(500_000, 500_000)]
    assert not (tmp_path / "m.part").exists()
