"""Install stamps (a hit is a few stat() calls, never a re-hash) and the manifests jobs read in the cache root."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from runnerguard.prewarm.specs import CacheSpec, safe_name
from runnerguard.prewarm.unpack import STAMP_FILE, UnsafeArchive, member_path

CHECKSUMS_FILE = "checksums.txt"
MANIFEST_FILE = "version-manifest.json"
TMP_DIR = ".runnerguard-tmp"
HASH_BLOCK = 4 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")

Verdict = Literal["hit", "changed", "outdated", "missing", "foreign"]


@dataclass
class Stamp:
    """What was installed, and each file's (size, mtime_ns, ctime_ns, sha256) as it stood right after install."""

    name: str
    sha256: str  # of the downloaded artifact, as the policy pinned it
    url: str
    unpack: str
    size: int
    mtime_ns: int
    installed_at: float
    last_used: float
    files: dict[str, list[int | str]] = field(default_factory=dict)

    def signature(self) -> dict[str, tuple[int, int, int]]:
        return {rel: (int(rec[0]), int(rec[1]), int(rec[2])) for rel, rec in self.files.items()}


def stamp_path(dest: Path) -> Path:
    return dest / STAMP_FILE


def _stat_signature(path: Path) -> tuple[int, int, int]:
    # ctime too: it cannot be set back by `touch -r`, so an in-place edit that restores mtime is still seen
    st = path.lstat()
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def read_stamp(dest: Path) -> Stamp | None:
    """The stamp in `dest`, or None when absent or unreadable (an unreadable stamp means: verify from scratch)."""
    try:
        raw = json.loads(stamp_path(dest).read_text())
        stamp = Stamp(**raw)
        # jobs can write here: a forged stamp must not lead us outside `dest` (paths, the name in lock paths)
        # nor forge lines in checksums.txt (anything but 64 hex digits)
        safe_name(stamp.name)
        for rel, record in stamp.files.items():
            if member_path(rel) is None or len(record) != 4 or not _SHA256.fullmatch(str(record[3])):
                return None
            if not all(isinstance(n, int) and not isinstance(n, bool) for n in record[:3]):
                return None
        return stamp
    except (OSError, ValueError, TypeError, UnsafeArchive):  # SpecError is a ValueError
        return None


def write_stamp(dest: Path, stamp: Stamp) -> None:
    """Replace the stamp atomically (write beside it, then rename) so a reader never sees half a stamp."""
    fd, tmp = tempfile.mkstemp(prefix=".stamp-", dir=dest)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(stamp), fh, separators=(",", ":"))
    os.replace(tmp, stamp_path(dest))


def build_stamp(spec: CacheSpec, into: Path, files: dict[str, str], *, now: float) -> Stamp:
    """Record every file's stat signature; call it after the last write into `into` (rename keeps ctimes)."""
    records: dict[str, list[int | str]] = {}
    total = newest = 0
    for rel, sha in sorted(files.items()):
        size, mtime_ns, ctime_ns = _stat_signature(into / rel)
        records[rel] = [size, mtime_ns, ctime_ns, sha]
        total += size
        newest = max(newest, mtime_ns)
    return Stamp(spec.name, spec.sha256, spec.url, spec.unpack, total, newest, now, now, records)


def check(spec: CacheSpec) -> tuple[Verdict, Stamp | None]:
    """Is the artifact in place? stat() only: 'hit', 'changed' (needs `verify`), 'outdated', 'missing', 'foreign'.

    'foreign' is a non-empty `dest` runnerguard did not install (or installed for another cache): we never delete
    what we did not put there for this cache.
    """
    stamp = read_stamp(spec.dest)
    if stamp is None:
        if not spec.dest.exists():
            return "missing", None
        if stamp_path(spec.dest).exists() or (spec.dest.is_dir() and not any(spec.dest.iterdir())):
            return "changed", None  # our unreadable stamp, or an empty directory: safe to replace
        return "foreign", None
    if stamp.name != spec.name:
        return "foreign", stamp  # another cache's artifact: two policy entries share a dest, replace neither
    if stamp.sha256 != spec.sha256 or stamp.url != spec.url or stamp.unpack != spec.unpack:
        return "outdated", stamp
    try:
        for rel, expected in stamp.signature().items():
            if _stat_signature(spec.dest / rel) != expected:
                return "changed", stamp
    except OSError:
        return "changed", stamp
    return "hit", stamp


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def verify(spec: CacheSpec, stamp: Stamp) -> bool:
    """Full re-hash after a stat change; when every file still matches, the stamp is refreshed and it is a hit."""
    try:
        for rel, record in stamp.files.items():
            path = spec.dest / rel
            if path.is_symlink() or file_sha256(path) != record[3]:
                return False
        for rel, record in stamp.files.items():
            record[0:3] = list(_stat_signature(spec.dest / rel))
    except OSError:
        return False
    write_stamp(spec.dest, stamp)
    return True


def installed(root: Path) -> list[tuple[Path, Stamp]]:
    """Every artifact directory in the cache root that carries a readable stamp, by directory name."""
    found: list[tuple[Path, Stamp]] = []
    try:
        children = sorted(root.iterdir())
    except OSError:
        return found
    for child in children:
        if child.name == TMP_DIR or child.is_symlink() or not child.is_dir():
            continue
        stamp = read_stamp(child)
        if stamp is not None:
            found.append((child, stamp))
    return found


def _replace_text(root: Path, name: str, text: str) -> None:
    tmp_dir = root / TMP_DIR
    tmp_dir.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{name}.", dir=tmp_dir)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, root / name)


def write_manifests(root: Path, *, now: float) -> None:
    """Rewrite checksums.txt (`sha256sum -c` format, run from the root) and version-manifest.json atomically.

    Callers hold the root's manifest lock: two installs in one root would otherwise each write a list missing
    the other's artifact.
    """
    lines: list[str] = []
    artifacts: dict[str, dict[str, object]] = {}
    for directory, stamp in installed(root):
        for rel, record in sorted(stamp.files.items()):
            lines.append(f"{record[3]}  {directory.name}/{rel}\n")
        artifacts[stamp.name] = {
            "dir": directory.name,
            "url": stamp.url,
            "sha256": stamp.sha256,
            "unpack": stamp.unpack,
            "size": stamp.size,
            "files": len(stamp.files),
            "installed_at": stamp.installed_at,
        }
    _replace_text(root, CHECKSUMS_FILE, "".join(lines))
    manifest = {"generated_at": now, "generator": "runnerguard", "artifacts": artifacts}
    _replace_text(root, MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
