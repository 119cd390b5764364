"""The runner listener's state, read from the runner's own `_diag/Runner_*.log` (its latest lines win)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

RunnerState = Literal["listening", "busy", "offline", "unknown"]
TAIL_BYTES = 256 << 10  # the listener logs a few lines per job; this reaches back over many jobs
MAX_JOB_NAME = 200

# The line texts come from GitHub's runner source (github.com/actions/runner at 258d6c8, src/Runner.Listener): the
# listener's Terminal writes each console line to the trace log as (src/Runner.Common/Terminal.cs, HostTraceListener.cs:
# "[{0:u} {type} {source}] ", files "Runner_{yyyyMMdd-HHmmss}-utc.log")
#   [2026-12-01 15:00:00Z INFO Terminal] WRITE LINE: 2026-12-01 15:00:00Z: Listening for Jobs
#   [2026-12-01 15:00:00Z ERR  Terminal] WRITE ERROR: Failed to create a session. The runner registration ...
_MESSAGE = re.compile(r"\] WRITE (?:LINE|ERROR): (?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ: )?(?P<msg>.*)$")
# Matched from the message's start, so a job name quoting another line's text cannot pass for it.
_RULES: tuple[tuple[re.Pattern[str], RunnerState, str], ...] = (
    # Runner.cs: _term.WriteLine($"{DateTime.UtcNow:u}: Listening for Jobs")
    (re.compile(r"Listening for Jobs$"), "listening", "listening for jobs"),
    # JobDispatcher.cs: term.WriteLine($"{DateTime.UtcNow:u}: Running job: {message.JobDisplayName}")
    (re.compile(r"Running job: (?P<job>.+)$"), "busy", "running a job"),
    # JobDispatcher.cs: $"{DateTime.UtcNow:u}: Job {message.JobDisplayName} completed with result: {result}"
    (re.compile(r"Job .+ completed with result: \w+$"), "listening", "job completed"),
    # MessageListener.cs / BrokerMessageListener.cs: $"{DateTime.UtcNow:u}: Runner reconnected."
    (re.compile(r"Runner reconnected\.$"), "listening", "reconnected"),
    # MessageListener.cs / BrokerMessageListener.cs (invalid_client): "Failed to create a session. The runner
    # registration has been deleted from the server, please re-configure. ..."
    (re.compile(r"Failed to create a session\. The runner registration has been deleted"), "offline",
     "registration deleted"),
    # what the brief's operators have seen from older runners: "... registration ... not found"
    (re.compile(r".*\bregistration\b.*\bnot found", re.IGNORECASE), "offline", "registration not found"),
    # MessageListener.cs / BrokerMessageListener.cs:
    #   $"{DateTime.UtcNow:u}: Runner connect error: {ex.Message}. Retrying until reconnected."
    (re.compile(r"Runner connect error: .*Retrying until reconnected\.$"), "offline", "connect error, retrying"),
    (re.compile(r".*(?:lost connection|Connection failed)", re.IGNORECASE), "offline", "connection lost"),
    # Runner.cs: _term.WriteLine("Exiting...") as the listener shuts down
    (re.compile(r"Exiting\.\.\.$"), "offline", "runner exited"),
)
_LOG_NAME = re.compile(r"Runner_\d{8}-\d{6}-utc\.log")


@dataclass(frozen=True)
class ListenerState:
    state: RunnerState
    detail: str
    job: str | None = None  # the job's display name (from the workflow: untrusted text, shown as text only)


def latest_log(diag: Path) -> Path | None:
    """The newest `Runner_*.log` by the timestamp in its name (the runner starts a new file per start and page)."""
    try:
        names = sorted(e.name for e in os.scandir(diag)
                       if _LOG_NAME.fullmatch(e.name) and e.is_file(follow_symlinks=False))
    except OSError:
        return None
    return diag / names[-1] if names else None


def _tail(path: Path, limit: int) -> list[str]:
    # O_NOFOLLOW: the job's user can write _diag; a symlink there must not make us read another file
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - limit))
        data = fh.read(limit)
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[1:] if size > limit else lines  # the first line of a cut tail is partial


def _clean(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable())[:MAX_JOB_NAME].strip()


def read_state(runner_dir: Path, *, tail_bytes: int = TAIL_BYTES) -> ListenerState:
    """Fold the latest log's lines through the rules, last match wins; 'unknown' when nothing tells."""
    log = latest_log(runner_dir / "_diag")
    if log is None:
        return ListenerState("unknown", "no _diag/Runner_*.log")
    try:
        lines = _tail(log, tail_bytes)
    except OSError as exc:
        return ListenerState("unknown", f"cannot read {log.name}: {exc.strerror}")
    state = ListenerState("unknown", f"nothing conclusive in {log.name}")
    for line in lines:
        if " Terminal] WRITE " not in line:
            continue  # only what the listener printed; other trace sources quote messages and URLs
        message = _MESSAGE.search(line)
        if message is None:
            continue
        for pattern, new_state, detail in _RULES:
            match = pattern.match(message.group("msg"))
            if match is None:
                continue
            job = _clean(match.group("job")) if new_state == "busy" else None
            state = ListenerState(new_state, detail, job or None)
            break
    return state
