"""The README's `flask --app app ...` commands run from a clone with a `.env`: what they read, what they say when
something is missing or down (one line, no traceback), and `deliveries send-test` against a real gunicorn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from devtools.redis_server import RedisServer, free_port, start_redis
from runnerguard.cli.send_test import TEST_REPO
from tests.helpers import ADMIN, SECRET
from tests.local_clone import MARK, clean_env, flask, make_clone, wait_until


@pytest.fixture()
def clone(tmp_path: Path) -> Path:
    return make_clone(tmp_path / "clone")


def write_env(clone: Path, **values: str) -> None:
    (clone / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    (clone / ".env").chmod(0o600)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_without_env_file_a_command_names_the_missing_setting_in_one_line(clone: Path) -> None:
    line = one_line_error(flask(clone, "deliveries", "list"))
    assert line.startswith("Error: configuration: GITHUB_WEBHOOK_SECRET: is required"), line


def test_without_redis_url_nothing_falls_back_to_a_default_redis(clone: Path, redis_server: RedisServer) -> None:
    # Even with a Redis answering on the old default's host, a command without REDIS_URL refuses to guess.
    write_env(clone, GITHUB_WEBHOOK_SECRET=SECRET)
    line = one_line_error(flask(clone, "deliveries", "list"))
    assert "REDIS_URL: is required" in line and "6379" in line  # the example, not a connection attempt


def test_the_cli_reads_env_and_the_environment_wins_over_it(clone: Path, redis_client: redis.Redis,
                                                            redis_server: RedisServer) -> None:
    write_env(clone, GITHUB_WEBHOOK_SECRET=SECRET, REDIS_URL=redis_server.url)
    listed = flask(clone, "deliveries", "list")
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    dead = f"redis://127.0.0.1:{free_port()}/0"
    line = one_line_error(flask(clone, "rollback", "list", env=clean_env(REDIS_URL=dead)))
    assert f"Redis is not reachable at {dead} (connection refused)" in line


@pytest.mark.parametrize("command", [["deliveries", "list"], ["deliveries", "show", "x"], ["rollback", "list"],
                                     ["report"], ["export", "--since", "7d"]])
def test_with_redis_down_a_command_says_so_in_one_line_without_the_password(clone: Path, command: list[str]) -> None:
    write_env(clone, GITHUB_WEBHOOK_SECRET=SECRET,
              REDIS_URL=f"redis://:hunter2hunter2hunter2@127.0.0.1:{free_port()}/0")
    line = one_line_error(flask(clone, *command))
    assert "Redis is not reachable at redis://:***@127.0.0.1:" in line and "make run" in line
    assert "hunter2" not in line


def test_a_wrong_redis_password_is_one_line_too(clone: Path, tmp_path: Path) -> None:
    server = start_redis(password="right-password-right-password", data_dir=tmp_path / "redis")
    try:
        write_env(clone, GITHUB_WEBHOOK_SECRET=SECRET,
                  REDIS_URL=f"redis://:wrong-password-wrong-password@127.0.0.1:{server.port}/0")
        line = one_line_error(flask(clone, "deliveries", "list"))
        assert "refused the password" in line and "wrong-password" not in line
        write_env(clone, GITHUB_WEBHOOK_SECRET=SECRET, REDIS_URL=f"redis://127.0.0.1:{server.port}/0")
        assert "refused the password" in one_line_error(flask(clone, "deliveries", "list"))
    finally:
        server.stop()


@pytest.fixture()
def service(tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis) -> Iterator[tuple[int, str]]:
    """gunicorn with the project's config and a real worker, on a free port, against the suite's Redis."""
    port, mark = free_port(), uuid.uuid4().hex
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(GITHUB_WEBHOOK_SECRET=SECRET, ADMIN_TOKEN=ADMIN, REDIS_URL=redis_server.url, PORT=str(port),
                    HOME=str(home), RUNNERGUARD_LOG_LEVEL="WARNING", RUNNERGUARD_HOST="test-host", **{MARK: mark})
    root = Path(__file__).resolve().parents[1]
    bin_dir = Path(sys.executable).parent
    procs = [subprocess.Popen([str(bin_dir / "gunicorn"), "app:create_app()", "--bind", f"127.0.0.1:{port}",
                               "--config", "deploy/gunicorn.conf.py", "--workers", "1"], cwd=root, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True),
             subprocess.Popen([sys.executable, "worker.py"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)]

    def up() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).ok
        except requests.RequestException:
            return False

    try:
        assert wait_until(up, timeout=30)
        # gunicorn 27 would create ~/.gunicorn/gunicorn.ctl, shared by every gunicorn of the user: not with ours.
        assert not (home / ".gunicorn").exists()
        yield port, mark
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _jobs(port: int) -> list[dict[str, object]]:
    answer = requests.get(f"http://127.0.0.1:{port}/api/jobs?repo={TEST_REPO['full_name']}",
                          headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5)
    return answer.json()["jobs"]  # type: ignore[no-any-return]


def test_send_test_posts_a_signed_job_that_a_worker_records(clone: Path, service: tuple[int, str],
                                                           redis_server: RedisServer) -> None:
    port, _ = service
    # The URL from HOST and PORT in .env (no RUNNERGUARD_URL): what the Procfile binds.
    write_env(clone, GITHUB_WEBHOOK_SECRET=SECRET, REDIS_URL=redis_server.url, HOST="127.0.0.1", PORT=str(port))
    queued = flask(clone, "deliveries", "send-test")
    assert queued.returncode == 0 and "Traceback" not in queued.stderr, queued.stderr
    assert f"to http://127.0.0.1:{port}: 202" in queued.stdout, queued.stdout
    job_id = int(queued.stdout.split("for job ", 1)[1].split()[0])
    assert wait_until(lambda: [j["status"] for j in _jobs(port) if j["job_id"] == job_id] == ["queued"], timeout=30)
    done = flask(clone, "deliveries", "send-test", "--action", "completed", "--job-id", str(job_id),
                 "--conclusion", "failure")
    assert done.returncode == 0, done.stderr

    def finished() -> bool:
        rows = [j for j in _jobs(port) if j["job_id"] == job_id]
        return bool(rows) and rows[0]["conclusion"] == "failure"

    assert wait_until(finished, timeout=30)
    row = next(j for j in _jobs(port) if j["job_id"] == job_id)
    assert row["queue_seconds"] is not None and row["run_seconds"] is not None
    assert row["created_at_approximate"] is False and row["pools"] == ["self-hosted"]


def test_send_test_with_the_wrong_secret_is_refused_by_the_service(clone: Path, service: tuple[int, str],
                                                                  redis_server: RedisServer) -> None:
    port, _ = service
    write_env(clone, GITHUB_WEBHOOK_SECRET="not-the-service-secret", REDIS_URL=redis_server.url,
              RUNNERGUARD_URL=f"http://127.0.0.1:{port}")
    line = one_line_error(flask(clone, "deliveries", "send-test"))
    assert f"http://127.0.0.1:{port} answered 401" in line
    assert _jobs(port) == []


def test_send_test_with_the_service_down_says_so_in_one_line(clone: Path, redis_server: RedisServer) -> None:
    port = free_port()
    write_env(clone, GITHUB_WEBHOOK_SECRET=SECRET, REDIS_URL=redis_server.url, RUNNERGUARD_URL=f"http://127.0.0.1:{port}")
    line = one_line_error(flask(clone, "deliveries", "send-test"))
    assert f"runnerguard is not answering at http://127.0.0.1:{port} (connection refused)" in line
    assert "make run" in line


@pytest.mark.parametrize("args, message", [
    (["--url", "file:///etc/passwd"], "RUNNERGUARD_URL: must be an http(s) URL"),
    (["--action", "exploded"], "Invalid value for '--action'"),
    (["--job-id", "0"], "Invalid value for '--job-id'"),
])
def test_send_test_refuses_bad_options(clone: Path, redis_server: RedisServer, args: list[str], message: str) -> None:
    write_env(clone, GITHUB_WEBHOOK_SECRET=SECRET, REDIS_URL=redis_server.url)
    result = flask(clone, "deliveries", "send-test", *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_bad_port_in_env_is_named(clone: Path, redis_server: RedisServer) -> None:
    write_env(clone, GITHUB_WEBHOOK_SECRET=SECRET, REDIS_URL=redis_server.url, PORT="80; rm -rf /")
    result = flask(clone, "deliveries", "send-test")
    assert result.returncode == 2 and "PORT: must be a TCP port number" in result.stderr
