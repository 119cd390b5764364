"""Policy commands: argv without a shell, only allow-listed environment, timeouts that kill the whole group."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from runnerguard.prewarm import CommandSpec, run_command
from runnerguard.prewarm.commands import run
from runnerguard.prewarm.warm import CommandResult

HOST = "laptop-extra"


def command(tmp_path: Path, code: str, *, timeout: float = 10, env_allow: list[str] | None = None) -> CommandSpec:
    return CommandSpec.from_mapping({
        "name": "probe", "argv": [sys.executable, "-c", code], "cwd": str(tmp_path),
        "timeout_seconds": timeout, "env_allow": env_allow or [], "pools": ["laptop"],
    })


def _alive(pid: int) -> bool:
    """Running or sleeping; a zombie nobody has reaped yet (PID 1 in a container may not) counts as dead."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_command_runs_in_its_cwd_and_output_is_captured(tmp_path: Path) -> None:
    spec = command(tmp_path, "import os, sys; print(os.getcwd()); print('warn', file=sys.stderr)")

    result = run_command(spec, host=HOST, lock_dir=tmp_path / "locks")

    assert (result.result, result.returncode, result.error) == ("ok", 0, None)
    assert result.stdout_tail.strip() == str(tmp_path)
    assert result.stderr_tail.strip() == "warn"


def test_only_allow_listed_variables_and_path_reach_the_child(tmp_path: Path) -> None:
    spec = command(tmp_path, "import json, os; print(json.dumps(dict(os.environ)))", env_allow=["CARGO_HOME", "UNSET"])
    environ = {"CARGO_HOME": "/srv/cargo", "GITHUB_TOKEN": "ghs_secret", "LD_PRELOAD": "/tmp/x.so", "PATH": "/usr/bin"}

    result = run_command(spec, host=HOST, lock_dir=tmp_path / "locks", environ=environ)

    child = json.loads(result.stdout_tail)
    child.pop("LC_CTYPE", None)  # Python may set this one itself at start-up
    assert child == {"CARGO_HOME": "/srv/cargo", "PATH": "/usr/bin"}


def test_argv_elements_are_never_interpreted_by_a_shell(tmp_path: Path) -> None:
    hostile = "$(touch pwned); `touch pwned2` && rm -rf ."
    spec = CommandSpec.from_mapping({
        "name": "echo", "argv": ["echo", hostile], "cwd": str(tmp_path), "timeout_seconds": 5, "pools": ["p"],
    })

    result = run_command(spec, host=HOST, lock_dir=tmp_path / "locks", environ=os.environ)

    assert result.stdout_tail == hostile + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locks"]  # nothing but our own lock directory


def test_timeout_kills_the_child_and_the_grandchild_it_spawned(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    spec = command(tmp_path, code, timeout=2.0)  # room for a loaded host to start both processes first

    started = time.monotonic()
    result = run_command(spec, host=HOST, lock_dir=tmp_path / "locks", environ=os.environ)

    assert result.result == "timeout" and "timed out after 2s" in (result.error or "")
    assert time.monotonic() - started < 8
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 3
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_child_ignoring_sigterm_gets_sigkill_after_the_grace(tmp_path: Path) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); " \
           "time.sleep(60)"
    spec = command(tmp_path, code, timeout=1.0)  # long enough for the child to start ignoring SIGTERM

    outcome = run(spec, environ=os.environ, kill_grace=0.3)

    assert outcome.status == "timeout"
    assert outcome.returncode == -9
    assert outcome.seconds < 5


def test_failing_command_reports_its_exit_code(tmp_path: Path) -> None:
    result = run_command(command(tmp_path, "raise SystemExit(3)"), host=HOST, lock_dir=tmp_path / "locks", environ=os.environ)
    assert (result.result, result.returncode, result.error) == ("failed", 3, "exited with 3")


def test_missing_working_directory_or_program_is_an_error_not_an_exception(
    tmp_path: Path
) -> None:
    gone = command(tmp_path / "no-such-mirror", "print(1)")
    missing = CommandSpec.from_mapping({
        "name": "nope", "argv": ["runnerguard-no-such-program"], "cwd": str(tmp_path), "timeout_seconds": 5,
        "pools": ["p"],
    })

    no_cwd = run_command(gone, host=HOST, lock_dir=tmp_path / "locks")
    no_prog = run_command(missing, host=HOST, lock_dir=tmp_path / "locks")

    assert no_cwd.result == "error" and "does not exist" in (no_cwd.error or "")
    assert no_prog.result == "error" and "cannot start" in (no_prog.error or "")


def test_output_is_bounded_to_its_tail(tmp_path: Path) -> None:
    spec = command(tmp_path, "import sys; sys.stdout.write('x' * 1_000_000 + 'END')")

    outcome = run(spec, environ=os.environ, output_limit=1000)

    assert outcome.stdout.endswith("x" * 997 + "END")
    assert outcome.stdout.startswith("[... 999003 bytes dropped ...]")


def test_same_command_on_the_same_host_runs_once_at_a_time(tmp_path: Path) -> None:
    spec = command(tmp_path, "import time; print('ran', flush=True); time.sleep(1)")
    results: list[CommandResult] = []

    def go() -> None:
        results.append(run_command(spec, host=HOST, lock_dir=tmp_path / "locks", environ=os.environ))

    first = threading.Thread(target=go)
    first.start()
    time.sleep(0.4)  # the first holds the lock for about a second
    go()
    first.join(10)

    assert sorted(r.result for r in results) == ["ok", "skipped"]
