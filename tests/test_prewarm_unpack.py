"""Archive members that would escape the destination (.., absolute, links, devices) are refused; nothing leaks out."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runnerguard.prewarm import warm_cache
from runnerguard.prewarm.stamp import TMP_DIR
from runnerguard.prewarm.unpack import UnsafeArchive, unpack
from tests.test_prewarm_server import LoopbackServer, cache_spec, make_tar, make_zip, sha256_file

SHA = "0" * 64


@pytest.fixture()
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


def _tar(*members: tuple[str, bytes, str] | tuple[str, bytes, str, bytes]) -> Callable[[tarfile.TarFile], None]:
    """An `extra` hook adding (name, type, linkname[, data]) members in order."""

    def add(tf: tarfile.TarFile) -> None:
        for name, kind, linkname, *data in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, linkname
            body = data[0] if data else b""
            info.size = len(body) if kind == tarfile.REGTYPE else 0
            tf.addfile(info, None if not body else io.BytesIO(body))

    return add


HOSTILE_TARS: dict[str, Callable[[tarfile.TarFile], None]] = {
    "dotdot": _tar(("../evil.txt", tarfile.REGTYPE, "", b"x")),
    "nested-dotdot": _tar(("model/../../evil.txt", tarfile.REGTYPE, "", b"x")),
    "absolute": _tar(("/tmp/runnerguard-evil.txt", tarfile.REGTYPE, "", b"x")),
    "symlink-absolute": _tar(("model/passwd", tarfile.SYMTYPE, "/etc/passwd")),
    "symlink-up-and-out": _tar(("model/out", tarfile.SYMTYPE, "../../outside")),
    "symlink-dotdot-after-a-name": _tar(("model/sneaky", tarfile.SYMTYPE, "x/../../../outside")),
    "write-through-symlink": _tar(
        ("model/dir", tarfile.SYMTYPE, "."), ("model/dir/evil.txt", tarfile.REGTYPE, "", b"x")
    ),
    "hardlink-absolute": _tar(("model/h", tarfile.LNKTYPE, "/etc/passwd")),
    "hardlink-outside": _tar(("model/h", tarfile.LNKTYPE, "../outside/secret.txt")),
    "hardlink-to-unknown": _tar(("model/h", tarfile.LNKTYPE, "model/not-yet")),
    "char-device": _tar(("model/null", tarfile.CHRTYPE, "")),
    "fifo": _tar(("model/pipe", tarfile.FIFOTYPE, "")),
    "control-char": _tar(("model/line\nbreak", tarfile.REGTYPE, "", b"x")),
    "reserved-stamp": _tar((".runnerguard-stamp.json", tarfile.REGTYPE, "", b"{}")),
}


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    """A directory beside the destination holding a secret; no hostile member may read, link or replace it."""
    where = tmp_path / "outside"
    where.mkdir()
    (where / "secret.txt").write_text("secret")
    return where


def _nothing_escaped(tmp_path: Path, outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret"
    assert not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/runnerguard-evil.txt").exists()


@pytest.mark.parametrize("kind", ["tar.gz", "tar.zst"])
@pytest.mark.parametrize("case", sorted(HOSTILE_TARS))
def test_hostile_tar_member_is_refused(case: str, kind: str, tmp_path: Path, outside: Path) -> None:
    archive = make_tar(tmp_path / f"a.{kind}", {"model/ok.txt": b"fine"}, kind=kind, extra=HOSTILE_TARS[case])
    into = tmp_path / "dest" / "into"
    into.mkdir(parents=True)

    with pytest.raises(UnsafeArchive):
        unpack(archive, kind, into, archive_sha256=SHA, file_name="x")  # type: ignore[arg-type]

    _nothing_escaped(tmp_path, outside)


@pytest.mark.parametrize(
    ("members", "symlinks"),
    [
        ({"../evil.txt": b"x"}, {}),
        ({"/tmp/runnerguard-evil.txt": b"x"}, {}),
        ({"model/../../evil.txt": b"x"}, {}),
        ({"model\\..\\..\\evil.txt": b"x"}, {}),
        ({}, {"model/passwd": "/etc/passwd"}),
        ({}, {"model/out": "../../outside"}),
        ({"model/dir/evil.txt": b"x"}, {"model/dir": "."}),
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "backslash", "symlink-absolute", "symlink-out", "through-symlink"],
)
def test_hostile_zip_member_is_refused(
    members: dict[str, bytes], symlinks: dict[str, str], tmp_path: Path, outside: Path
) -> None:
    # symlinks are written first so a member "through" one comes after it, as an attacker would order them
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, target in symlinks.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
        for name, data in members.items():
            zf.writestr(name, data)
    into = tmp_path / "dest" / "into"
    into.mkdir(parents=True)

    with pytest.raises(UnsafeArchive):
        unpack(archive, "zip", into, archive_sha256=SHA, file_name="x")

    _nothing_escaped(tmp_path, outside)


def test_links_that_stay_inside_are_kept(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "a.tar.gz",
        {"model/v1/data.bin": b"weights"},
        extra=_tar(("model/current", tarfile.SYMTYPE, "v1"), ("model/v1/sub/up", tarfile.SYMTYPE, "../data.bin"),
                   ("model/copy.bin", tarfile.LNKTYPE, "model/v1/data.bin")),
    )
    into = tmp_path / "into"
    into.mkdir()

    files = unpack(archive, "tar.gz", into, archive_sha256=SHA, file_name="x")

    assert (into / "model/current/data.bin").read_bytes() == b"weights"
    assert (into / "model/v1/sub/up").read_bytes() == b"weights"
    assert os.stat(into / "model/copy.bin").st_ino == os.stat(into / "model/v1/data.bin").st_ino
    assert files["model/copy.bin"] == files["model/v1/data.bin"] == sha256_file(into / "model/v1/data.bin")


def test_archive_bigger_than_the_budget_is_refused(tmp_path: Path) -> None:
    bomb = make_zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(2_000_000)})  # deflates to a few KiB
    into = tmp_path / "into"
    into.mkdir()

    with pytest.raises(UnsafeArchive, match="more than 1000000"):
        unpack(bomb, "zip", into, archive_sha256=SHA, file_name="x", max_bytes=1_000_000)


def test_executable_bit_survives_but_setuid_does_not(tmp_path: Path) -> None:
    def extra(tf: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("bin/tool")
        info.mode, info.size = 0o4777, 2
        tf.addfile(info, io.BytesIO(b"#!"))

    archive = make_tar(tmp_path / "a.tar.gz", {}, extra=extra)
    into = tmp_path / "into"
    into.mkdir()
    unpack(archive, "tar.gz", into, archive_sha256=SHA, file_name="x")
    assert (into / "bin/tool").stat().st_mode & 0o7777 == 0o755


def test_traversal_archive_through_warm_cache_is_an_error_that_keeps_nothing(
    server: LoopbackServer, tmp_path: Path, outside: Path
) -> None:
    archive = make_tar(tmp_path / "evil.tar.gz", {"model/ok.txt": b"fine"}, extra=HOSTILE_TARS["symlink-up-and-out"])
    root = tmp_path / "cache"
    spec = cache_spec(root, server.add(archive), archive, unpack="tar.gz")

    result = warm_cache(spec, host="laptop-extra")

    assert result.result == "error" and "symlink points outside" in (result.error or "")
    assert not spec.dest.exists()
    assert [p.name for p in (root / TMP_DIR).iterdir() if not p.name.endswith(".lock")] == []
    _nothing_escaped(tmp_path, outside)
