"""Unpack zip / tar.gz / tar.zst (or place a plain file) into a fresh directory, refusing members that escape it."""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from runnerguard.errors import RunnerguardError
from runnerguard.prewarm.specs import Unpack

COPY_BLOCK = 1 << 20
# Every member costs an inode and a directory entry even when empty: 20,000 empty files must not fit in a 1-byte
# budget. 512 bytes is a tar header, about what a small file really takes beyond its data.
MEMBER_OVERHEAD = 512
MAX_MEMBERS = 100_000  # far beyond any cache we serve; an archive of more is a disk-filling trick
STAMP_FILE = ".runnerguard-stamp.json"  # written by stamp.py; an archive may not ship a file of that name


class UnsafeArchive(RunnerguardError):
    """An archive member that would land outside the destination, or a kind of file we do not create."""

    def __init__(self, member: str, why: str) -> None:
        super().__init__(f"archive member {member!r:.200}: {why}")
        self.member = member
        self.why = why


def member_path(name: str) -> PurePosixPath | None:
    """The member's path relative to the destination, None for the root itself; UnsafeArchive when it escapes."""
    if not name or "\x00" in name:
        raise UnsafeArchive(name, "empty name or NUL byte")
    # control characters would forge lines in checksums.txt; a backslash is a separator to Windows-made archives
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name) or "\\" in name:
        raise UnsafeArchive(name, "control character or backslash in name")
    if name.startswith("/"):
        raise UnsafeArchive(name, "absolute path")
    parts = [part for part in PurePosixPath(name).parts if part != "."]
    if ".." in parts:
        raise UnsafeArchive(name, "'..' in path")
    if not parts:
        return None
    if parts[0] == STAMP_FILE:
        raise UnsafeArchive(name, "reserved name")
    return PurePosixPath(*parts)


def _check_symlink(rel: PurePosixPath, target: str) -> None:
    """Allow a link only if it resolves inside the destination whatever the links it passes through resolve to.

    '..' is allowed only as leading components (up to a real ancestor, since no member may sit below a link);
    after that the target only descends, so by induction over links created earlier it stays inside.
    """
    if not target or target.startswith("/") or "\x00" in target:
        raise UnsafeArchive(str(rel), f"symlink to absolute or empty target {target!r:.100}")
    parts = [part for part in PurePosixPath(target).parts if part != "."]
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    if ".." in parts[ups:] or ups > len(rel.parent.parts):
        raise UnsafeArchive(str(rel), f"symlink points outside the destination ({target!r:.100})")


class _Writer:
    """Creates members under `root`, hashing regular files, and keeps the bookkeeping the safety checks need."""

    def __init__(self, root: Path, max_bytes: int | None, max_members: int = MAX_MEMBERS) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.max_members = max_members
        self.members = 0
        self.written = 0
        self.files: dict[str, str] = {}  # relative path -> sha256, regular files and hard links
        self.links: set[PurePosixPath] = set()

    def admit(self, name: str) -> None:
        """Count one member and charge its overhead, before anything of it is created."""
        self.members += 1
        if self.members > self.max_members:
            raise UnsafeArchive(name, f"archive has more than {self.max_members} members")
        self.written += MEMBER_OVERHEAD
        if self.max_bytes is not None and self.written > self.max_bytes:
            raise UnsafeArchive(name, f"archive unpacks to more than {self.max_bytes} bytes "
                                      f"(each member counts {MEMBER_OVERHEAD} bytes)")

    def _target(self, rel: PurePosixPath) -> Path:
        # a member below a symlink we created could be written wherever that link points
        for ancestor in (rel, *rel.parents):
            if ancestor in self.links:
                raise UnsafeArchive(str(rel), f"goes through the symlink {ancestor}")
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.is_file():  # a later duplicate member replaces the earlier one, as tar does
            path.unlink()
            self.files.pop(str(rel), None)
            self.links.discard(rel)
        return path

    def directory(self, rel: PurePosixPath) -> None:
        self._target(rel).mkdir(exist_ok=True)

    def regular(self, rel: PurePosixPath, source: IO[bytes], mode: int) -> None:
        path = self._target(rel)
        # O_EXCL | O_NOFOLLOW: never write through something that appeared at the path in the meantime
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            while block := source.read(COPY_BLOCK):
                self.written += len(block)
                if self.max_bytes is not None and self.written > self.max_bytes:
                    raise UnsafeArchive(str(rel), f"archive unpacks to more than {self.max_bytes} bytes")
                digest.update(block)
                out.write(block)
        # owner-executable stays executable (0755), the rest 0644: no setuid/setgid/sticky, no group/other write
        os.chmod(path, 0o755 if mode & 0o100 else 0o644)
        self.files[str(rel)] = digest.hexdigest()

    def symlink(self, rel: PurePosixPath, target: str) -> None:
        _check_symlink(rel, target)
        os.symlink(target, self._target(rel))
        self.links.add(rel)

    def hardlink(self, rel: PurePosixPath, target_name: str) -> None:
        target = member_path(target_name)
        if target is None or str(target) not in self.files:
            raise UnsafeArchive(str(rel), f"hard link to {target_name!r:.100}, not an earlier regular member")
        path = self._target(rel)
        os.link(self.root / target, path, follow_symlinks=False)
        self.files[str(rel)] = self.files[str(target)]


def _unpack_zip(archive: Path, writer: _Writer) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > writer.max_members:
            raise UnsafeArchive(archive.name, f"has {len(infos)} members, more than {writer.max_members}")
        declared = sum(info.file_size for info in infos) + MEMBER_OVERHEAD * len(infos)
        if writer.max_bytes is not None and declared > writer.max_bytes:
            raise UnsafeArchive(archive.name, f"declares {declared} bytes, more than {writer.max_bytes}")
        for info in infos:
            writer.admit(info.filename)
            rel = member_path(info.filename)
            mode = info.external_attr >> 16
            if info.flag_bits & 0x1:
                raise UnsafeArchive(info.filename, "encrypted member")
            if rel is None:
                continue
            if info.is_dir():
                writer.directory(rel)
            elif stat.S_ISLNK(mode):
                try:
                    target = zf.read(info).decode("utf-8", "strict")
                except UnicodeDecodeError as exc:
                    raise UnsafeArchive(info.filename, "symlink target is not UTF-8") from exc
                writer.symlink(rel, target)
            elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # no type bits (writestr's default) = regular
                raise UnsafeArchive(info.filename, f"special file (mode {mode:o})")
            else:
                with zf.open(info) as source:
                    writer.regular(rel, source, mode)


@contextmanager
def _tar_stream(archive: Path, kind: Unpack) -> Iterator[tarfile.TarFile]:
    with archive.open("rb") as raw:
        if kind == "tar.zst":
            import zstandard  # noqa: PLC0415 - only hosts with tar.zst caches need the package

            try:
                with zstandard.ZstdDecompressor().stream_reader(raw) as plain:
                    with tarfile.open(fileobj=plain, mode="r|") as tf:
                        yield tf
            except zstandard.ZstdError as exc:  # one error family for the caller, whatever the compression
                raise tarfile.ReadError(f"zstd: {exc}") from exc
        else:
            with tarfile.open(fileobj=raw, mode="r|gz") as tf:
                yield tf


def _unpack_tar(archive: Path, kind: Unpack, writer: _Writer) -> None:
    with _tar_stream(archive, kind) as tf:
        for member in tf:
            writer.admit(member.name)
            rel = member_path(member.name)
            if rel is None:
                continue
            if member.isdev():  # char, block and fifo: nothing a cache needs, plenty an attacker could
                raise UnsafeArchive(member.name, "device or fifo")
            if member.issym():
                _check_symlink(rel, member.linkname)  # our own rule first, so the error says what we checked
            try:
                # tarfile's own 'data' filter as a second opinion (it resolves paths against the real directory)
                tarfile.data_filter(member, str(writer.root))
            except tarfile.FilterError as exc:
                raise UnsafeArchive(member.name, f"refused by tarfile's data filter: {exc}") from exc
            if member.isdir():
                writer.directory(rel)
            elif member.issym():
                writer.symlink(rel, member.linkname)
            elif member.islnk():
                writer.hardlink(rel, member.linkname)
            elif member.isreg():
                source = tf.extractfile(member)
                if source is None:
                    raise UnsafeArchive(member.name, "unreadable regular member")
                writer.regular(rel, source, member.mode)
            else:
                raise UnsafeArchive(member.name, f"unsupported member type {member.type!r}")


def unpack(
    archive: Path, kind: Unpack, into: Path, *, archive_sha256: str, file_name: str, max_bytes: int | None = None,
    max_members: int = MAX_MEMBERS,
) -> dict[str, str]:
    """Fill the empty directory `into` from `archive`; returns {relative path: sha256} of the regular files.

    For kind 'none' the archive itself is moved to `into/file_name` (same filesystem, no copy). Raises
    UnsafeArchive, zipfile.BadZipFile, tarfile.TarError or OSError; the caller throws `into` away on any of them.
    """
    if kind == "none":
        rel = member_path(file_name)
        if rel is None or len(rel.parts) != 1:
            raise UnsafeArchive(file_name, "plain-file name must be a single path component")
        os.replace(archive, into / rel)
        return {str(rel): archive_sha256}
    writer = _Writer(into, max_bytes, max_members)
    if kind == "zip":
        _unpack_zip(archive, writer)
    else:
        _unpack_tar(archive, kind, writer)
    return writer.files
