"""A clone-shaped directory for tests of `make run` and the README's commands, and a census of what they started.

The commands run as the README writes them (`.venv/bin/flask --app app ...` in the clone, `.env` beside it), but
in a temporary directory whose entries link to this checkout: the developer's own `.env` and `./var` stay untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINKED = ("app.py", "worker.py", "config", "handlers", "runnerguard", "devtools", "deploy", "Procfile")
MARK = "RUNNERGUARD_TEST_MARK"  # inherited by every process a test starts: found again in /proc, orphans included


def make_clone(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        (where / name).symlink_to(ROOT / name)
    (where / ".venv").mkdir()
    (where / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    return where


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without anything of runnerguard's, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITHUB_", "RUNNERGUARD_", "REDIS_", "FLASK_", "GUNICORN_"))
           and k not in ("HOST", "PORT", "ADMIN_TOKEN", "METRICS_TOKEN", "XDG_RUNTIME_DIR")}
    return {**env, **extra}


def flask(clone: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`.venv/bin/flask --app app ARGS` in the clone, as a second terminal would run it."""
    return subprocess.run([str(clone / ".venv" / "bin" / "flask"), "--app", "app", *args], cwd=clone,
                          env=env if env is not None else clean_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def marked_processes(mark: str, *, titled: str | None = None) -> list[tuple[int, int, str]]:
    """(pid, ppid, command) of every live process whose environment carries MARK=mark, or whose command line holds
    `titled` (redis-server rewrites its title over its environment: "redis-server 127.0.0.1:PORT")."""
    found = []
    needle = f"{MARK}={mark}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            if needle not in (entry / "environ").read_bytes().split(b"\0") and not (titled and titled in command):
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] != "Z":
            found.append((int(entry.name), int(fields[1]), command))
    return found


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()
