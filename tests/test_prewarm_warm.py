"""warm_cache end to end against a real loopback server: install, hit, corruption, resume, locks."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runnerguard.prewarm import SpecError, warm_cache
from runnerguard.prewarm.stamp import CHECKSUMS_FILE, MANIFEST_FILE, TMP_DIR
from runnerguard.prewarm.unpack import STAMP_FILE
from tests.test_prewarm_server import LoopbackServer, cache_spec, make_tar, make_zip, sha256_file

MODEL = {
    "vosk-model-small-en-us-0.15/am/final.mdl": os.urandom(200_000),
    "vosk-model-small-en-us-0.15/conf/model.conf": b"--sample-frequency=16000\n",
    "vosk-model-small-en-us-0.15/README": b"small English model\n",
}
HOST = "laptop-extra"


@pytest.fixture()
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


def leftovers(root: Path) -> list[str]:
    """What a prewarm left in the temp dir besides its lock files (should be nothing after success or mismatch)."""
    tmp = root / TMP_DIR
    return sorted(p.name for p in tmp.iterdir() if not p.name.endswith(".lock")) if tmp.exists() else []


def test_cold_install_unpacks_members_as_they_stand_with_stamp_and_manifests(
    server: LoopbackServer, tmp_path: Path
) -> None:
    archive = make_zip(tmp_path / "vosk-model-small-en-us-0.15.zip", MODEL)
    root = tmp_path / "vosk-models"
    spec = cache_spec(root, server.add(archive), archive, unpack="zip", name="small-en-us-0.15")

    result = warm_cache(spec, host=HOST)

    assert (result.result, result.error, result.bytes) == ("miss", None, archive.stat().st_size)
    for member, data in MODEL.items():
        assert (spec.dest / member).read_bytes() == data
    stamp = json.loads((spec.dest / STAMP_FILE).read_text())
    assert stamp["sha256"] == spec.sha256 and len(stamp["files"]) == 3
    manifest = json.loads((root / MANIFEST_FILE).read_text())
    assert manifest["artifacts"]["small-en-us-0.15"]["sha256"] == spec.sha256
    checksums = (root / CHECKSUMS_FILE).read_text()
    assert "small-en-us-0.15/vosk-model-small-en-us-0.15/am/final.mdl" in checksums
    if shutil.which("sha256sum"):  # the jobs' own check: `cd $CACHE && sha256sum -c checksums.txt`
        subprocess.run(["sha256sum", "--quiet", "-c", CHECKSUMS_FILE], cwd=root, check=True)
    assert leftovers(root) == []


def test_installed_artifact_is_a_hit_by_stamp_without_a_request(
    server: LoopbackServer, tmp_path: Path
) -> None:
    archive = make_zip(tmp_path / "m.zip", MODEL)
    spec = cache_spec(tmp_path / "cache", server.add(archive), archive, unpack="zip", ttl_seconds=0)
    warm_cache(spec, host=HOST)

    second = warm_cache(spec, host=HOST)

    assert (second.result, second.detail, second.bytes) == ("hit", "stamp", 0)
    assert len(server.gets()) == 1


def test_corrupted_file_is_caught_by_the_stamp_and_reinstalled(
    server: LoopbackServer, tmp_path: Path
) -> None:
    archive = make_zip(tmp_path / "m.zip", MODEL)
    spec = cache_spec(tmp_path / "cache", server.add(archive), archive, unpack="zip", ttl_seconds=0)
    warm_cache(spec, host=HOST)
    victim = spec.dest / "vosk-model-small-en-us-0.15/am/final.mdl"
    before = victim.stat()
    with victim.open("r+b") as fh:  # same size, one flipped byte, mtime put back: only ctime tells
        fh.write(bytes([fh.read(1)[0] ^ 0xFF]))
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))

    again = warm_cache(spec, host=HOST)

    assert (again.result, again.detail) == ("miss", "changed")
    assert victim.read_bytes() == MODEL["vosk-model-small-en-us-0.15/am/final.mdl"]
    assert len(server.gets()) == 2


def test_touched_but_intact_file_is_verified_and_stays_a_hit(
    server: LoopbackServer, tmp_path: Path
) -> None:
    archive = make_zip(tmp_path / "m.zip", MODEL)
    spec = cache_spec(tmp_path / "cache", server.add(archive), archive, unpack="zip", ttl_seconds=0)
    warm_cache(spec, host=HOST)
    os.utime(spec.dest / "vosk-model-small-en-us-0.15/README", (1, 1))

    touched = warm_cache(spec, host=HOST)
    after = warm_cache(spec, host=HOST)

    assert (touched.result, touched.detail) == ("hit", "verified after a stat change")
    assert (after.result, after.detail) == ("hit", "stamp")  # the stamp was refreshed by the verification
    assert len(server.gets()) == 1


def test_checksum_mismatch_keeps_nothing_and_records_a_clear_error(
    server: LoopbackServer, tmp_path: Path
) -> None:
    archive = make_zip(tmp_path / "m.zip", MODEL)
    root = tmp_path / "cache"
    spec = cache_spec(root, server.add(archive), archive, unpack="zip", sha256="0" * 64)

    result = warm_cache(spec, host=HOST)

    assert result.result == "error"
    assert result.error is not None and "checksum mismatch" in result.error and sha256_file(archive) in result.error
    assert not spec.dest.exists()
    assert leftovers(root) == []


@pytest.mark.parametrize("kind", ["tar.gz", "tar.zst"])
def test_tar_archives_install_with_in_tree_symlinks(
    kind: str, server: LoopbackServer, tmp_path: Path
) -> None:

    def extra(tf: tarfile.TarFile) -> None:
        link = tarfile.TarInfo("model/current.conf")
        link.type, link.linkname = tarfile.SYMTYPE, "conf/model.conf"
        tf.addfile(link)

    archive = make_tar(tmp_path / f"m.{kind}", {"model/conf/model.conf": b"rate=16000\n"}, kind=kind, extra=extra)
    spec = cache_spec(tmp_path / "cache", server.add(archive), archive, unpack=kind)

    result = warm_cache(spec, host=HOST)

    assert result.result == "miss", result.error
    assert (spec.dest / "model/current.conf").read_text() == "rate=16000\n"


def test_plain_file_lands_under_its_url_name(server: LoopbackServer, tmp_path: Path) -> None:
    blob = tmp_path / "libvosk.so"
    blob.write_bytes(os.urandom(50_000))
    spec = cache_spec(tmp_path / "cache", server.add(blob), blob, unpack="none", name="libvosk-0.3.45")

    assert warm_cache(spec, host=HOST).result == "miss"
    assert (spec.dest / "libvosk.so").read_bytes() == blob.read_bytes()


def test_interrupted_download_resumes_with_a_range_request_in_the_same_prewarm(
    server: LoopbackServer, tmp_path: Path
) -> None:
    blob = tmp_path / "model.bin"
    blob.write_bytes(os.urandom(600_000))
    spec = cache_spec(tmp_path / "cache", server.add(blob), blob, unpack="none")
    server.cut_after = 250_000

    result = warm_cache(spec, host=HOST)

    assert result.result == "miss", result.error
    first, second = server.gets()
    assert (first.status, first.range) == (200, None)
    assert (second.status, second.range) == (206, "bytes=250000-")
    assert second.if_range is not None and second.if_range.startswith('"')
    assert result.bytes == 600_000  # 250 000 before the cut + 350 000 after; nothing fetched twice
    assert (spec.dest / "model.bin").read_bytes() == blob.read_bytes()


def test_part_left_by_a_failed_prewarm_is_resumed_by_the_next_one(
    server: LoopbackServer, tmp_path: Path
) -> None:
    blob = tmp_path / "model.bin"
    blob.write_bytes(os.urandom(400_000))
    spec = cache_spec(tmp_path / "cache", server.add(blob), blob, unpack="none", size=400_000)
    server.cut_after = 100_000

    failed = warm_cache(spec, host=HOST, retries=0)
    resumed = warm_cache(spec, host=HOST, retries=0)

    assert failed.result == "error" and "connection lost" in (failed.error or "")
    assert (resumed.result, resumed.bytes) == ("miss", 300_000)
    assert server.gets()[-1].range == "bytes=100000-"
    assert sha256_file(spec.dest / "model.bin") == spec.sha256


def test_server_that_ignores_range_makes_the_download_restart_cleanly(
    server: LoopbackServer, tmp_path: Path
) -> None:
    blob = tmp_path / "model.bin"
    blob.write_bytes(os.urandom(300_000))
    spec = cache_spec(tmp_path / "cache", server.add(blob), blob, unpack="none")
    server.honour_range, server.cut_after = False, 120_000

    result = warm_cache(spec, host=HOST)

    assert result.result == "miss", result.error
    assert [s.status for s in server.gets()] == [200, 200]
    assert sha256_file(spec.dest / "model.bin") == spec.sha256


def test_file_rewritten_on_the_server_is_refetched_whole_through_if_range(
    server: LoopbackServer, tmp_path: Path
) -> None:
    blob = tmp_path / "model.bin"
    data = os.urandom(300_000)
    blob.write_bytes(data)
    spec = cache_spec(tmp_path / "cache", server.add(blob), blob, unpack="none")
    server.cut_after = 50_000
    assert warm_cache(spec, host=HOST, retries=0).result == "error"
    blob.write_bytes(data)  # same bytes, new mtime: a new ETag, so the old one must not get a 206
    os.utime(blob, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))

    result = warm_cache(spec, host=HOST, retries=0)

    last = server.gets()[-1]
    assert (last.range, last.status) == ("bytes=50000-", 200)
    assert (result.result, result.bytes) == ("miss", 300_000)


def test_new_pinned_version_replaces_the_old_one(
    server: LoopbackServer, tmp_path: Path
) -> None:
    old = make_zip(tmp_path / "v1.zip", {"model/v1.txt": b"one"})
    new = make_zip(tmp_path / "v2.zip", {"model/v2.txt": b"two"})
    root = tmp_path / "cache"
    warm_cache(cache_spec(root, server.add(old), old, unpack="zip"), host=HOST)
    spec = cache_spec(root, server.add(new), new, unpack="zip", ttl_seconds=0)

    result = warm_cache(spec, host=HOST)

    assert (result.result, result.detail) == ("miss", "outdated")
    assert sorted(p.name for p in (spec.dest / "model").iterdir()) == ["v2.txt"]


def test_directory_runnerguard_did_not_install_is_left_alone(
    server: LoopbackServer, tmp_path: Path
) -> None:
    archive = make_zip(tmp_path / "m.zip", MODEL)
    spec = cache_spec(tmp_path / "cache", server.add(archive), archive, unpack="zip")
    spec.dest.mkdir(parents=True)
    (spec.dest / "hand-downloaded.txt").write_text("mine")

    result = warm_cache(spec, host=HOST)

    assert result.result == "error" and "not installed by runnerguard" in (result.error or "")
    assert (spec.dest / "hand-downloaded.txt").read_text() == "mine"
    assert server.gets() == []


def test_http_404_is_recorded_once_not_retried_or_raised(
    server: LoopbackServer, tmp_path: Path
) -> None:
    archive = make_zip(tmp_path / "m.zip", MODEL)
    spec = cache_spec(tmp_path / "cache", server.base + "/gone.zip", archive, unpack="zip")

    result = warm_cache(spec, host=HOST)

    assert result.result == "error" and "HTTP 404" in (result.error or "")
    assert len(server.gets()) == 1


def test_unreachable_server_is_an_error_result(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "m.zip", MODEL)
    with LoopbackServer() as gone:
        url = gone.add(archive)
    spec = cache_spec(tmp_path / "cache", url, archive, unpack="zip")

    result = warm_cache(spec, host=HOST, retries=0)

    assert result.result == "error" and "ConnectionError" in (result.error or "")


def test_host_from_a_payload_is_validated(tmp_path: Path) -> None:

    archive = make_zip(tmp_path / "m.zip", MODEL)
    spec = cache_spec(tmp_path / "cache", "http://127.0.0.1:9/m.zip", archive, unpack="zip")
    with pytest.raises(SpecError, match="host"):
        warm_cache(spec, host="../../etc")


def test_forged_stamp_is_not_trusted_and_the_artifact_is_reinstalled(
    server: LoopbackServer, tmp_path: Path
) -> None:
    archive = make_zip(tmp_path / "m.zip", MODEL)
    spec = cache_spec(tmp_path / "cache", server.add(archive), archive, unpack="zip", ttl_seconds=0)
    warm_cache(spec, host=HOST)
    stamp_file = spec.dest / STAMP_FILE
    forged = json.loads(stamp_file.read_text())
    secret = tmp_path / "secret.txt"
    secret.write_text("s")
    forged["files"] = {"../../secret.txt": [1, secret.stat().st_mtime_ns, secret.stat().st_ctime_ns, "0" * 64]}
    stamp_file.write_text(json.dumps(forged))

    result = warm_cache(spec, host=HOST)

    assert (result.result, result.detail) == ("miss", "changed")
    assert len(json.loads(stamp_file.read_text())["files"]) == 3
    assert "secret" not in (spec.root / CHECKSUMS_FILE).read_text()


def test_dest_holding_another_caches_artifact_is_not_replaced(
    server: LoopbackServer, tmp_path: Path
) -> None:
    first = make_zip(tmp_path / "a.zip", {"a.txt": b"a"})
    second = make_zip(tmp_path / "b.zip", {"b.txt": b"b"})
    root = tmp_path / "cache"
    warm_cache(cache_spec(root, server.add(first), first, unpack="zip", name="a"), host=HOST)
    clash = cache_spec(root, server.add(second), second, unpack="zip", name="b")
    clash = dataclasses.replace(clash, dest=root / "a")  # a policy the loader should have refused (check_unique)

    result = warm_cache(clash, host=HOST)

    assert result.result == "error" and "installed for cache 'a'" in (result.error or "")
    assert (root / "a" / "a.txt").read_bytes() == b"a"


def test_leftovers_of_a_worker_killed_mid_install_are_swept(
    server: LoopbackServer, tmp_path: Path
) -> None:
    archive = make_zip(tmp_path / "m.zip", MODEL)
    root = tmp_path / "cache"
    spec = cache_spec(root, server.add(archive), archive, unpack="zip")
    stale = root / TMP_DIR / "model.new-k1ll3d"
    stale.mkdir(parents=True)
    (stale / "half-written.bin").write_bytes(bytes(10_000))

    assert warm_cache(spec, host=HOST).result == "miss"
    assert leftovers(root) == []
