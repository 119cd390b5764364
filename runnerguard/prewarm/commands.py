"""Run one policy command: argv list, no shell, allow-listed environment, timeout that kills the process group."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from runnerguard.prewarm.locks import file_lock
from runnerguard.prewarm.specs import CommandSpec, safe_name

log = logging.getLogger(__name__)

OUTPUT_LIMIT = 64 << 10  # tail kept per stream: enough for an error message, bounded whatever the command prints
KILL_GRACE_SECONDS = 2.0
READER_JOIN_SECONDS = 2.0

Status = Literal["ok", "failed", "timeout", "error"]


@dataclass(frozen=True)
class Outcome:
    status: Status
    returncode: int | None
    seconds: float
    stdout: str
    stderr: str
    error: str | None


def child_env(allow: tuple[str, ...], environ: Mapping[str, str]) -> dict[str, str]:
    """Only the allowed names (plus PATH, so argv[0] resolves); nothing else of the worker's environment leaks."""
    env = {name: environ[name] for name in allow if name in environ}
    env["PATH"] = environ.get("PATH", os.defpath)
    return env


class _Tail:
    """Reads a pipe to EOF on a thread, keeping only the last `limit` bytes."""

    def __init__(self, pipe: IO[bytes], limit: int) -> None:
        self._pipe = pipe
        self._limit = limit
        self._buf = bytearray()
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="prewarm-cmd-output", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            while chunk := os.read(self._pipe.fileno(), 65536):
                self._buf += chunk
                if len(self._buf) > self._limit:
                    self.dropped += len(self._buf) - self._limit
                    del self._buf[: len(self._buf) - self._limit]

    def text(self) -> str:
        # a process that escaped the group may hold the pipe open: do not wait for its EOF forever
        self._thread.join(READER_JOIN_SECONDS)
        prefix = f"[... {self.dropped} bytes dropped ...]\n" if self.dropped else ""
        return prefix + bytes(self._buf).decode("utf-8", "replace")


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def run(
    spec: CommandSpec,
    *,
    environ: Mapping[str, str],
    output_limit: int = OUTPUT_LIMIT,
    kill_grace: float = KILL_GRACE_SECONDS,
) -> Outcome:
    """Run `spec` to completion or its timeout; on timeout the whole process group gets SIGTERM, then SIGKILL."""
    started = time.monotonic()
    if not spec.cwd.is_dir():
        return Outcome("error", None, 0.0, "", "", f"working directory {spec.cwd} does not exist")
    try:
        # start_new_session: the child leads a new process group, so grandchildren die with it on timeout
        proc = subprocess.Popen(
            list(spec.argv), cwd=spec.cwd, env=child_env(spec.env_allow, environ), shell=False,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, close_fds=True,
        )
    except OSError as exc:
        return Outcome("error", None, time.monotonic() - started, "", "", f"cannot start {spec.argv[0]!r}: {exc}")
    assert proc.stdout is not None and proc.stderr is not None
    out, err = _Tail(proc.stdout, output_limit), _Tail(proc.stderr, output_limit)
    timed_out = False
    try:
        proc.wait(timeout=spec.timeout_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=kill_grace)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait()
    # leftovers of the group (a background helper the command started) would hold the pipes and the mirror
    _kill_group(proc.pid, signal.SIGKILL)
    stdout, stderr = out.text(), err.text()
    proc.stdout.close()
    proc.stderr.close()
    seconds = time.monotonic() - started
    if timed_out:
        return Outcome("timeout", proc.returncode, seconds, stdout, stderr,
                       f"timed out after {spec.timeout_seconds:g}s; process group killed")
    status: Status = "ok" if proc.returncode == 0 else "failed"
    error = None if status == "ok" else f"exited with {proc.returncode}"
    return Outcome(status, proc.returncode, seconds, stdout, stderr, error)


@dataclass(frozen=True)
class CommandResult:
    """What one policy command did on one host; the output tails are bounded (OUTPUT_LIMIT per stream)."""

    name: str
    host: str
    result: Literal["ok", "failed", "timeout", "error", "skipped"]
    returncode: int | None
    seconds: float
    stdout_tail: str = ""
    stderr_tail: str = ""
    error: str | None = None


def run_command(
    spec: CommandSpec,
    *,
    host: str,
    lock_dir: Path,
    environ: Mapping[str, str] | None = None,
    lock_wait: float = 0.0,
) -> CommandResult:
    """Run a policy command once per host at a time (e.g. `git fetch` in a mirror); never raises for its failures.

    `lock_dir` holds the host-side flock of each command (the agent's own state directory, not the command's cwd,
    which a job may be able to write). `environ` is where allowed variables are taken from (default: this
    process's environment, read at call time).
    """
    host = safe_name(host, key="host")
    started = time.monotonic()
    # "cmd-" files sit in a directory of their own, so a command and a cache of the same name never share a lock
    with file_lock(lock_dir / f"cmd-{spec.name}.lock", wait=lock_wait) as got:
        if not got:
            return CommandResult(spec.name, host, "skipped", None, time.monotonic() - started)
        outcome = run(spec, environ=os.environ if environ is None else environ)
    log.info("prewarm command %s on %s: %s rc=%s", spec.name, host, outcome.status, outcome.returncode,
             extra={"command": spec.name, "host": host, "result": outcome.status, "seconds": outcome.seconds})
    return CommandResult(spec.name, host, outcome.status, outcome.returncode, outcome.seconds, outcome.stdout,
                         outcome.stderr, outcome.error)
