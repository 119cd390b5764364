"""Every Redis config shipped under deploy/ loads in the suite's redis-server, refuses unauthenticated clients and
lets in only the password deploy/redis-password.sh generates."""

from __future__ import annotations

import hashlib
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app import create_app
from config import load_settings
from devtools.redis_server import ZSET_LISTPACK_ENTRIES, find_redis_server, free_port
from tests.helpers import ADMIN, SECRET

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PASSWORD_SCRIPT = DEPLOY / "redis-password.sh"
AUTH_FILE = "/etc/runnerguard/redis-auth.conf"  # where the shipped configs include the generated user from
CONFIGS = sorted(p for p in DEPLOY.rglob("*.conf") if "redis" in p.name)


@dataclass
class Installed:
    """What redis-password.sh wrote, in a temporary /etc."""

    auth_file: Path
    env_file: Path
    url: str

    @property
    def password(self) -> str:
        return self.url.split("@")[0].rsplit(":", 1)[1]


@dataclass
class Running:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def client(self) -> redis.Redis:
        """redis-py without a password, and without its retries (a refusal is final here)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, retry=Retry(NoBackoff(), 0))

    def raw(self, *command: str) -> bytes:
        """One command in plain RESP and the first line of the answer: what any client without a password gets,
        whatever a client library sends first (redis-py opens with HELLO)."""
        frame = f"*{len(command)}\r\n" + "".join(f"${len(part)}\r\n{part}\r\n" for part in command)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(frame.encode())
            return sock.makefile("rb").readline()


def install_password(etc: Path, port: int) -> Installed:
    auth_file, env_file = etc / "runnerguard" / "redis-auth.conf", etc / "runnerguard" / "env"
    subprocess.run(["sh", str(PASSWORD_SCRIPT), str(auth_file), str(env_file), f"127.0.0.1:{port}"],
                   check=True, capture_output=True, timeout=30)
    lines = [line for line in env_file.read_text().splitlines() if line.startswith("REDIS_URL=")]
    assert len(lines) == 1
    return Installed(auth_file, env_file, lines[0].removeprefix("REDIS_URL="))


def rewritten(config: Path, *, data_dir: Path, port: int, auth_file: Path) -> str:
    """The shipped file with its machine paths pointed at the test's own; any other path fails the test, so a new
    one is noticed rather than read from (or written to) this machine."""
    out = []
    for line in config.read_text().splitlines():
        words = line.split()
        directive = words[0].lower() if words else "#"
        if directive.startswith("#"):
            out.append(line)
        elif directive == "dir":
            out.append(f"dir {data_dir}")
        elif directive == "port":
            out.append(f"port {port}")
        elif directive == "include":
            assert words[1:] == [AUTH_FILE], f"{config.name}: unexpected include {line!r}"
            out.append(f"include {auth_file}")
        else:
            assert not any(w.startswith("/") for w in words[1:]), f"{config.name}: a path to rewrite: {line!r}"
            out.append(line)
    return "\n".join([*out, "daemonize no", ""])


def start(conf: Path, port: int, log: Path, *, wait_for: Installed | None) -> Running:
    """Start redis-server on `conf`; with `wait_for`, until that password's client gets PONG."""
    with log.open("wb") as out:
        process = subprocess.Popen([find_redis_server(), str(conf)], stdout=out, stderr=subprocess.STDOUT)
    running = Running(port, process, log)
    if wait_for is None:
        return running
    client = redis.Redis.from_url(wait_for.url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            raise AssertionError(f"redis-server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if client.ping():
                return running
        except redis.ConnectionError:
            pass
        if time.monotonic() > deadline:
            stop(running)
            raise AssertionError(f"redis-server did not answer on {port}: {log.read_text()[-2000:]}")
        time.sleep(0.05)


def stop(running: Running) -> None:
    if running.process.poll() is None:
        running.process.terminate()
        try:
            running.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()


@pytest.fixture(params=CONFIGS, ids=[str(p.relative_to(DEPLOY)) for p in CONFIGS])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Running, Installed]]:
    port = free_port()
    installed = install_password(tmp_path / "etc", port)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    conf = tmp_path / "redis.conf"
    conf.write_text(rewritten(request.param, data_dir=data_dir, port=port, auth_file=installed.auth_file))
    running = start(conf, port, tmp_path / "redis.log", wait_for=installed)
    yield running, installed
    stop(running)


def test_redis_configs_are_shipped() -> None:
    assert DEPLOY / "redis.conf" in CONFIGS


def test_an_unauthenticated_client_is_refused(server: tuple[Running, Installed]) -> None:
    running, installed = server
    for command in (("PING",), ("GET", "rg:probe"), ("SET", "rg:probe", "1"), ("KEYS", "*"), ("CONFIG", "GET", "*"),
                    ("HELLO", "3"), ("ACL", "WHOAMI")):
        assert running.raw(*command).startswith(b"-NOAUTH"), command
    with pytest.raises(redis.AuthenticationError):
        running.client().ping()
    assert redis.Redis.from_url(installed.url).exists("rg:probe") == 0


def test_only_the_generated_password_of_the_runnerguard_user_gets_in(server: tuple[Running, Installed]) -> None:
    running, installed = server
    password = installed.password
    one_off = password[:-1] + ("1" if password.endswith("0") else "0")
    for attempt in (("default", password), (password,), ("runnerguard", one_off), ("runnerguard", ""),
                    ("runnerguard", hashlib.sha256(password.encode()).hexdigest()), ("runnerguard", password.upper())):
        assert running.raw("AUTH", *attempt).startswith(b"-WRONGPASS"), attempt
    assert running.raw("AUTH", "runnerguard", password) == b"+OK\r\n"
    client = redis.Redis.from_url(installed.url)
    assert client.set("rg:probe", "kept") and client.get("rg:probe") == b"kept"
    assert client.acl_whoami() == "runnerguard"


def test_the_config_keeps_aof_always_and_noeviction(server: tuple[Running, Installed]) -> None:
    _, installed = server
    config = redis.Redis.from_url(installed.url, decode_responses=True).config_get("*")
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "always"
    assert config["maxmemory-policy"] == "noeviction"
    # a busy pool's index buckets stay listpacks, as on the suite's and `make run`'s own redis-server
    assert int(config["zset-max-listpack-entries"]) == ZSET_LISTPACK_ENTRIES > 128
    assert config["protected-mode"] == "yes"
    assert str(config["bind"]).split()[0] == "127.0.0.1"


def test_the_app_reaches_redis_with_the_generated_url(server: tuple[Running, Installed]) -> None:
    _, installed = server
    settings = load_settings({"GITHUB_WEBHOOK_SECRET": SECRET, "ADMIN_TOKEN": ADMIN, "REDIS_URL": installed.url,
                              "RUNNERGUARD_HOST": "test-host"})
    client = create_app(settings).test_client()
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_the_password_files_are_private_and_redis_keeps_only_a_hash(tmp_path: Path) -> None:
    installed = install_password(tmp_path / "etc", 6379)
    for path in (installed.auth_file, installed.env_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    text = installed.auth_file.read_text()
    assert installed.password not in text
    assert hashlib.sha256(installed.password.encode()).hexdigest() in text
    assert len(installed.password) == 64
    # a second run rotates: one REDIS_URL line, a new password, other lines kept
    with installed.env_file.open("a") as env:
        env.write("ADMIN_TOKEN=keep-me\n")
    again = install_password(tmp_path / "etc", 6379)
    assert again.password != installed.password
    assert "ADMIN_TOKEN=keep-me" in again.env_file.read_text()


@pytest.mark.parametrize("config", CONFIGS, ids=[str(p.relative_to(DEPLOY)) for p in CONFIGS])
def test_without_the_password_file_redis_does_not_start(config: Path, tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "redis.conf"
    conf.write_text(rewritten(config, data_dir=tmp_path, port=port, auth_file=tmp_path / "missing.conf"))
    running = start(conf, port, tmp_path / "redis.log", wait_for=None)
    try:
        assert running.process.wait(timeout=15) != 0
    finally:
        stop(running)
    assert "missing.conf" in running.log.read_text()


@pytest.mark.parametrize("config", CONFIGS, ids=[str(p.relative_to(DEPLOY)) for p in CONFIGS])
def test_with_an_empty_password_file_nobody_gets_in(config: Path, tmp_path: Path) -> None:
    port = free_port()
    empty = tmp_path / "empty.conf"
    empty.write_text("")
    conf = tmp_path / "redis.conf"
    conf.write_text(rewritten(config, data_dir=tmp_path, port=port, auth_file=empty))
    running = start(conf, port, tmp_path / "redis.log", wait_for=None)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                assert running.raw("PING").startswith(b"-NOAUTH")
                break
            except ConnectionRefusedError:
                assert running.process.poll() is None, running.log.read_text()
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert running.raw("AUTH", "default", "").startswith(b"-WRONGPASS")
        assert running.raw("AUTH", "").startswith(b"-")
    finally:
        stop(running)


def test_redis_refuses_an_inline_comment_so_loading_is_a_real_check(tmp_path: Path) -> None:
    """The bug deploy/redis.conf had: a `#` after a directive. The suite's redis-server must refuse it."""
    conf = tmp_path / "redis.conf"
    conf.write_text(f"port {free_port()}\ndir {tmp_path}\nmaxmemory-policy noeviction   # a comment\n")
    running = start(conf, 0, tmp_path / "redis.log", wait_for=None)
    try:
        assert running.process.wait(timeout=15) != 0
    finally:
        stop(running)
    assert "wrong number of arguments" in running.log.read_text()

