"""`make run` for real (`python -m devtools.run_local` on free ports): the README's commands beside it, its files,
its Redis, and Ctrl-C / SIGTERM leaving nothing behind."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests
from dotenv import dotenv_values

from devtools import run_local
from devtools.redis_server import free_port
from tests.local_clone import MARK, clean_env, flask, make_clone, marked_processes, wait_until

pytestmark = pytest.mark.slow


@dataclass
class Run:
    clone: Path
    home: Path
    port: int
    mark: str
    process: subprocess.Popen[str] | None = None
    titled: str | None = None  # redis-server's title, for the census (its environment is overwritten)
    output: list[str] = field(default_factory=list)

    @property
    def env_file(self) -> Path:
        return self.clone / ".env"

    @property
    def data_dir(self) -> Path:
        return self.clone / "var"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def values(self) -> dict[str, str]:
        return {k: v or "" for k, v in dotenv_values(self.env_file).items()}

    def start(self, **extra: str) -> None:
        env = clean_env(HOME=str(self.home), PORT=str(self.port), RUNNERGUARD_ENV_FILE=str(self.env_file),
                        RUNNERGUARD_DATA_DIR=str(self.data_dir), RUNNERGUARD_LOG_LEVEL="WARNING",
                        **{MARK: self.mark}, **extra)
        # Its own process group, as a terminal's foreground job is: the test's Ctrl-C goes to the whole group.
        self.process = subprocess.Popen([sys.executable, "-m", "devtools.run_local"], cwd=self.clone, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        ready = wait_until(self._ready, timeout=60, step=0.2)
        assert ready, self.stop_and_read()

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            return False
        try:
            return requests.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def signal_group(self, signum: int) -> float:
        """Send `signum` to the process group; seconds until run_local exited (it must within 10 s)."""
        assert self.process is not None
        start = time.monotonic()
        os.killpg(self.process.pid, signum)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        return time.monotonic() - start

    def stop_and_read(self) -> str:
        assert self.process is not None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        out = self.process.stdout.read() if self.process.stdout else ""
        self.output.append(out)
        return out


@pytest.fixture()
def run(tmp_path: Path) -> Iterator[Run]:
    clone = make_clone(tmp_path / "clone")
    home = tmp_path / "home"
    home.mkdir()
    stack = Run(clone=clone, home=home, port=free_port(), mark=uuid.uuid4().hex)
    yield stack
    if stack.process is not None and stack.process.poll() is None:
        stack.stop_and_read()
    for pid, _, _ in marked_processes(stack.mark, titled=stack.titled):  # never leave anything running, whatever the test found
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _readme_commands() -> list[list[str]]:
    """The `flask --app app ...` lines of the README's quick start and command line sections, as written."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = re.findall(r"^\.venv/bin/flask --app app (.+?)(?:\s{2,}#.*)?$", readme, flags=re.MULTILINE)
    return [line.split() for line in lines]


def test_ctrl_c_stops_everything_workers_before_redis_and_readme_commands_work_beside_it(run: Run) -> None:
    run.start()
    values = run.values()
    # .env: owner-only, with the Redis URL (and its password) and the service URL make run uses.
    assert stat.S_IMODE(run.env_file.stat().st_mode) == 0o600
    assert values["RUNNERGUARD_EMBEDDED_REDIS"] == "1"
    assert values["RUNNERGUARD_URL"] == run.url
    redis_url = values["REDIS_URL"]
    password = re.fullmatch(r"redis://:([A-Za-z0-9_-]{32,})@127\.0\.0\.1:(\d+)/0", redis_url)
    assert password, redis_url
    redis_port = int(password.group(2))
    with pytest.raises(redis.AuthenticationError):  # nobody on the machine reads the payloads without it
        redis.Redis(port=redis_port, socket_timeout=2).get("x")
    assert redis.Redis.from_url(redis_url).config_get("appendonly") == {"appendonly": "yes"}

    # Every README command, as written, from the clone, with nothing but .env to go on.
    sent = flask(run.clone, "deliveries", "send-test")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert f"to {run.url}: 202" in sent.stdout
    job_id = int(re.search(r"for job (\d+)", sent.stdout).group(1))  # type: ignore[union-attr]
    guid = json.loads(sent.stdout.splitlines()[0].split(": 202 ", 1)[1])["delivery"]
    headers = {"Authorization": f"Bearer {values['ADMIN_TOKEN']}"}

    def job_seen() -> bool:
        jobs = requests.get(f"{run.url}/api/jobs?repo=example/runnerguard-send-test", headers=headers,
                            timeout=5).json()["jobs"]
        return any(j["job_id"] == job_id for j in jobs)

    assert wait_until(job_seen, timeout=60), "the sample job never appeared in /api/jobs"
    commands = _readme_commands()
    assert len(commands) >= 7, commands
    failures = []
    for written in commands:
        args = [guid if a == "72d3162e-cc78-11e3-81ab-4c9367dc0958" else a for a in written]
        result = flask(run.clone, *args)
        text = result.stdout + result.stderr
        if "Traceback" in text or "6379" in text:
            failures.append((args, text[-800:]))
        # recover needs a GitHub App, restore a rolled-back pool, train-dictionary 20 deliveries: a refusal that
        # says why is what they owe us.
        elif result.returncode != 0 and not (args[:2] in (["deliveries", "recover"], ["rollback", "restore"],
                                                          ["deliveries", "train-dictionary"])
                                             and "Error: " in result.stderr):
            failures.append((args, text[-800:]))
    assert not failures, failures

    # Its files: the data directory 0700, everything in it 0600 (redis-server's AOF included).
    assert stat.S_IMODE(run.data_dir.stat().st_mode) == 0o700
    files = [p for p in run.data_dir.rglob("*") if p.is_file()]
    assert any("appendonly" in p.name for p in files), files
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files), [(p, oct(p.stat().st_mode)) for p in files]
    # gunicorn's control socket is this instance's, under the data directory; the user's shared one is untouched.
    assert (run.data_dir / "gunicorn.ctl").is_socket()
    assert not (run.home / ".gunicorn").exists()

    titled = run.titled = f"redis-server 127.0.0.1:{redis_port}"
    before = marked_processes(run.mark, titled=titled)
    names = " ".join(command for _, _, command in before)
    assert "honcho" in names and "gunicorn" in names and "worker.py" in names and "redis-server" in names, names
    took = run.signal_group(signal.SIGINT)
    out = run.stop_and_read()
    assert took < 10, (took, out[-2000:])
    assert run.process is not None and run.process.returncode == 0, out[-2000:]
    assert wait_until(lambda: not marked_processes(run.mark, titled=titled), timeout=1), marked_processes(run.mark)
    assert "Traceback" not in out, out[-3000:]
    head = out.split("system      |", 1)[0]
    assert re.search(r"redis-server \d+\.\d+\.\d+ \(", head), head
    assert "no GitHub App configured" in head and f"{run.url}/setup" in head
    assert values["ADMIN_TOKEN"] in head and password.group(1) not in out  # the Redis password is never printed
    assert f"Listening at: http://127.0.0.1:{run.port}" in out  # loopback unless HOST says otherwise
    # Workers before Redis: every Procfile process had stopped when Redis was stopped.
    redis_stopped = out.index("runnerguard: Redis stopped")
    for name in ("web.1", "worker.1", "scheduler.1", "prewarm.1"):
        assert out.index(f"{name} stopped") < redis_stopped, name


def test_sigterm_stops_everything_and_a_restart_keeps_the_password_and_the_data(run: Run) -> None:
    run.start()
    first = run.values()
    titled = run.titled = f"redis-server 127.0.0.1:{first['REDIS_URL'].rsplit(':', 1)[1].split('/')[0]}"
    sent = flask(run.clone, "deliveries", "send-test")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert wait_until(lambda: len(flask(run.clone, "deliveries", "list").stdout.splitlines()) == 1, timeout=20)
    # SIGTERM to run_local alone, as a service manager sends it.
    assert run.process is not None
    start = time.monotonic()
    run.process.send_signal(signal.SIGTERM)
    run.process.wait(timeout=15)
    assert time.monotonic() - start < 10
    out = run.stop_and_read()
    assert wait_until(lambda: not marked_processes(run.mark, titled=titled), timeout=1), marked_processes(run.mark)
    assert "Traceback" not in out and run.process.returncode == 0, out[-2000:]

    # Beside a stopped make run, a command says so in one line and never tries another Redis.
    down = flask(run.clone, "deliveries", "list")
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert down.stderr.strip().splitlines() == [down.stderr.strip()], down.stderr
    assert "Redis is not reachable at redis://:***@127.0.0.1:" in down.stderr and "make run" in down.stderr
    assert first["REDIS_URL"].split("@")[0] not in down.stderr

    run.start()
    second = run.values()
    assert second["REDIS_URL"] == first["REDIS_URL"]  # the password generated once, the port kept while free
    assert second["ADMIN_TOKEN"] == first["ADMIN_TOKEN"]
    listed = flask(run.clone, "deliveries", "list")
    assert listed.returncode == 0 and "example/runnerguard-send-test" in listed.stdout, listed.stderr
    assert run.signal_group(signal.SIGINT) < 10
    run.stop_and_read()
    assert wait_until(lambda: not marked_processes(run.mark, titled=titled), timeout=1)


def test_an_old_world_readable_data_directory_is_made_private(tmp_path: Path) -> None:
    data = tmp_path / "var"
    (data / "redis" / "appendonlydir").mkdir(parents=True)
    aof = data / "redis" / "appendonlydir" / "appendonly.aof.1.incr.aof"
    aof.write_text("*1\r\n")
    for path in (data, data / "redis", data / "redis" / "appendonlydir"):
        path.chmod(0o755)
    aof.chmod(0o644)
    run_local.make_private(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "redis" / "appendonlydir").stat().st_mode) == 0o700
    assert stat.S_IMODE(aof.stat().st_mode) == 0o600


@pytest.mark.parametrize("host, token, locked", [
    ("127.0.0.1", "", False), ("::1", "", False), ("localhost", "", False),
    ("0.0.0.0", "", True), ("192.168.1.20", "", True), ("::", "", True),  # noqa: S104 - a decision, not a bind
    ("0.0.0.0", "already-set", False),  # noqa: S104
])
def test_a_non_loopback_bind_without_a_metrics_token_gets_one(host: str, token: str, locked: bool,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    added = run_local.metrics_lock(host, token)
    said = capsys.readouterr().out
    assert bool(added) is locked
    if locked:
        assert len(added["METRICS_TOKEN"]) >= 32
        assert f"listening on {host} without METRICS_TOKEN" in said and "Authorization: Bearer" in said
    else:
        assert said == ""
