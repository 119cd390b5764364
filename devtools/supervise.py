"""Child processes of `make run` and `make demo`: each in its own session, stopped in order, none left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def spawn(args: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a child in a session of its own: the terminal's Ctrl-C reaches only the supervisor, which then stops
    the children in the order it chooses (the workers before the Redis they talk to)."""
    return subprocess.Popen(list(args), start_new_session=True, **kwargs)


def _ppid_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The command name (field 2) may hold spaces and parentheses: the fields after the last ')' are fixed.
        fields = stat[stat.rfind(")") + 2:].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (read from /proc)."""
    parents = _ppid_map()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2:].split()[0] != "Z"  # a zombie has ended; only its parent's wait is missing


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def stop(*processes: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM each child's process group, wait up to `grace` seconds for all of them together, then SIGKILL what
    is left, including anything they started (seen before the stop or since)."""
    below: set[int] = set()
    for process in processes:
        below |= descendants(process.pid)
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    # Children that moved to sessions of their own (honcho starts each Procfile line in one) are not in the
    # group: they are ended by pid once their parent is gone, after a short grace of their own.
    for process in processes:
        below |= descendants(process.pid)
    deadline = min(deadline, time.monotonic() + 1.0)
    while any(alive(pid) for pid in below) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in below:
        if alive(pid):
            _signal(pid, signal.SIGKILL)
    for process in processes:
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()


class StopRequest:
    """SIGINT and SIGTERM set a flag instead of raising: the supervisor stops its children in order, then exits."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    def install(self, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> StopRequest:
        for signum in signals:
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        self.signum = signum
        self.event.set()

    def wait(self, timeout: float) -> bool:
        return self.event.wait(timeout)
