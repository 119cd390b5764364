"""Disk hygiene on real directory trees: oldest first, only where allowed, never through a symlink, never while busy."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from runnerguard.agent import hygiene
from runnerguard.agent.runner_log import read_state
from runnerguard.prewarm.stamp import STAMP_FILE, TMP_DIR
from tests.test_agent_runner_log import RUNNING, STARTUP, write_log

NOW = time.time()
DAY = 86400.0


def age(path: Path, days: float) -> None:
    """Set atime and mtime of `path` and everything below it `days` back (children first: they touch parents)."""
    when = NOW - days * DAY
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            age(child, days)
    os.utime(path, (when, when), follow_symlinks=False)


def put(path: Path, size: int = 8192) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def disk_at(fill: float, total: int = 10_000_000):  # type: ignore[no-untyped-def]
    return lambda _path: (total, int(total * fill), total - int(total * fill))


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    """A runner directory as GitHub's runner lays it out, with planted symlinks to a file and a directory outside."""
    runner, outside = tmp_path / "actions-runner", tmp_path / "outside"
    secret = put(outside / "secret.txt", 100)
    put(outside / "dir" / "keep.txt", 100)
    put(outside / "dir2" / "keep.txt", 100)
    work = runner / "_work"
    put(work / "_temp" / "leftover-1" / "blob")
    put(work / "_temp" / "fresh" / "blob")
    put(work / "_tool" / "node" / "18.20.0" / "x64" / "bin" / "node")
    put(work / "_tool" / "Python" / "3.12.1" / "x64" / "python")
    put(work / "_actions" / "actions" / "checkout" / "v4" / "action.yml")
    put(work / "ColdVox" / "ColdVox" / "src" / "main.rs")
    put(work / "active-repo" / "active-repo" / "README")
    put(work / "_PipelineMapping" / "Coldaine" / "ColdVox" / "PipelineFolder.json", 100)
    (work / "_temp" / "link-to-file").symlink_to(secret)
    (work / "_temp" / "link-to-dir").symlink_to(outside / "dir", target_is_directory=True)
    (work / "_tool" / "node" / "escape").symlink_to(outside / "dir2", target_is_directory=True)
    for sub in ("_temp", "_tool", "_actions", "ColdVox", "active-repo", "_PipelineMapping"):
        age(work / sub, 30)
    age(work / "_temp" / "fresh", 0)
    age(work / "_tool" / "Python", 1)
    put(work / "active-repo" / "active-repo" / ".git" / "FETCH_HEAD", 100)  # yesterday's run touched its checkout
    write_log(runner, STARTUP)
    return {"runner": runner, "work": work, "outside": outside}


def outside_intact(outside: Path) -> None:
    assert (outside / "secret.txt").read_bytes() == b"x" * 100
    assert (outside / "dir" / "keep.txt").exists() and (outside / "dir2" / "keep.txt").exists()


def clean(tree: dict[str, Path], **kw):  # type: ignore[no-untyped-def]
    args = {"cleanup_at": 0.8, "keep_days": 7, "dry_run": False, "cache_roots": [], "declared": set(),
            "is_busy": lambda: False, "now": NOW, "disk_usage": disk_at(0.95), **kw}
    return hygiene.clean(tree["runner"], **args)


def test_old_runner_dirs_and_idle_workspaces_go_oldest_first_and_nothing_outside(tree: dict[str, Path]) -> None:
    work = tree["work"]

    done = clean(tree)

    assert done is not None and not done.dry_run and done.errors == ()
    assert sorted(Path(p).relative_to(work).as_posix() for p in done.removed) == [
        "ColdVox", "_actions/actions", "_temp/leftover-1", "_temp/link-to-dir", "_temp/link-to-file", "_tool/node"]
    assert sorted(p.name for p in (work / "_temp").iterdir()) == ["fresh"]
    assert sorted(p.name for p in (work / "_tool").iterdir()) == ["Python"]
    assert (work / "active-repo" / "active-repo" / "README").exists()
    assert (work / "_PipelineMapping" / "Coldaine" / "ColdVox" / "PipelineFolder.json").exists()
    outside_intact(tree["outside"])
    assert done.freed_bytes >= 4 * 8192
    assert done.as_report() == {"at": NOW, "freed_bytes": done.freed_bytes, "removed": list(done.removed),
                                "dry_run": False}


def test_a_runner_dir_replaced_by_a_symlink_out_is_not_walked(tree: dict[str, Path]) -> None:
    outside, work = tree["outside"], tree["work"]
    put(outside / "victim" / "old" / "data")
    age(outside / "victim", 30)
    shutil.rmtree(work / "_actions")
    (work / "_actions").symlink_to(outside / "victim", target_is_directory=True)

    done = clean(tree)

    assert done is not None
    assert (outside / "victim" / "old" / "data").exists()
    assert not any("victim" in p or p.endswith("_actions/old") for p in done.removed)


def test_a_whole_work_directory_symlinked_out_yields_nothing(tmp_path: Path, tree: dict[str, Path]) -> None:
    runner2 = tmp_path / "runner2"
    runner2.mkdir()
    (runner2 / "_work").symlink_to(tree["work"], target_is_directory=True)
    assert hygiene.clean(runner2, cleanup_at=0.8, keep_days=7, dry_run=False, cache_roots=[], declared=set(),
                         is_busy=lambda: False, now=NOW, disk_usage=disk_at(0.95)) is None
    assert (tree["work"] / "ColdVox").exists()


def test_nothing_happens_below_the_threshold_or_while_a_job_runs(tree: dict[str, Path]) -> None:
    assert clean(tree, disk_usage=disk_at(0.79)) is None
    write_log(tree["runner"], STARTUP + RUNNING)
    assert clean(tree, is_busy=lambda: read_state(tree["runner"]).state == "busy") is None
    assert (tree["work"] / "ColdVox").exists() and (tree["work"] / "_temp" / "leftover-1").exists()


def test_a_job_that_starts_mid_cleanup_stops_it(tree: dict[str, Path]) -> None:
    answers = iter([False, False, True])  # idle at the start and for the first removal, then a job starts

    done = clean(tree, is_busy=lambda: next(answers, True))

    assert done is not None and len(done.removed) == 1


def test_cleanup_stops_once_enough_is_free(tree: dict[str, Path]) -> None:
    # 85% of 100 kB used: getting to 75% (cleanup_at minus the hysteresis) needs 10 kB, two 8 KiB files
    done = clean(tree, disk_usage=disk_at(0.85, total=100_000))
    assert done is not None and 2 <= len(done.removed) < 6
    assert done.freed_bytes >= 10_000


def test_dry_run_lists_without_deleting(tree: dict[str, Path]) -> None:
    done = clean(tree, dry_run=True)
    assert done is not None and done.dry_run and len(done.removed) == 6 and done.freed_bytes >= 4 * 8192
    for path in done.removed:
        assert os.path.lexists(path)
    outside_intact(tree["outside"])


def test_keep_days_is_respected(tree: dict[str, Path]) -> None:
    assert clean(tree, keep_days=60) is None
    done = clean(tree, keep_days=0, now=NOW + 60)
    assert done is not None and any(p.endswith("_temp/fresh") for p in done.removed)


def test_the_agents_own_leftovers_and_undeclared_artifacts_in_cache_roots(tree: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    root = tmp_path / "cache" / "vosk-models"
    put(root / TMP_DIR / "gone-small.abc" / "small" / "model.bin")
    put(root / TMP_DIR / "small.part")  # a download in progress: never a candidate
    for name, last_used in (("small", NOW - 30 * DAY), ("retired", NOW - 30 * DAY), ("retired-recent", NOW)):
        put(root / name / "model.bin")
        (root / name / STAMP_FILE).write_text(json.dumps({
            "name": name, "sha256": "0" * 64, "url": "https://x/y", "unpack": "none", "size": 8192, "mtime_ns": 0,
            "installed_at": last_used, "last_used": last_used, "files": {}}))
    age(root / TMP_DIR / "gone-small.abc", 2)
    (root / "escape").symlink_to(tree["outside"] / "dir", target_is_directory=True)

    done = clean(tree, cache_roots=[root], declared={"small", "retired-recent"}, disk_usage=disk_at(0.99))

    assert done is not None
    removed = {Path(p) for p in done.removed}
    assert root / TMP_DIR / "gone-small.abc" in removed and root / "retired" in removed
    assert (root / "small" / "model.bin").exists() and (root / "retired-recent" / "model.bin").exists()
    assert (root / TMP_DIR / "small.part").exists()
    outside_intact(tree["outside"])


def test_a_file_name_with_a_newline_is_reported_as_text(tree: dict[str, Path]) -> None:
    evil = tree["work"] / "_temp" / "evil\nname\x1b"
    put(evil)
    age(evil, 30)
    done = clean(tree)
    assert done is not None and not os.path.lexists(evil)
    reported = [p for p in done.as_report()["removed"] if "evil" in p]
    assert reported == [str(tree["work"] / "_temp" / "evil?name?")]


def test_the_agents_own_scan_does_not_make_directories_look_used(tree: dict[str, Path]) -> None:
    # listing a directory updates its atime (relatime: at least daily); the next scan must not read that as a use
    first = clean(tree, dry_run=True, now=time.time())
    second = clean(tree, dry_run=True, now=time.time())
    assert first is not None and second is not None and second.removed == first.removed
