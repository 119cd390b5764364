"""The runner listener's state from real `_diag/Runner_*.log` files, in the line formats GitHub's runner writes.

The lines below follow github.com/actions/runner (src/Runner.Listener/Runner.cs, JobDispatcher.cs,
MessageListener.cs; src/Runner.Common/Terminal.cs and HostTraceListener.cs for the "[time TYPE Source] " header).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from runnerguard.agent import health
from runnerguard.agent.runner_log import latest_log, read_state
from runnerguard.prewarm.specs import HostSpec

T = "2026-12-01 15:00:00Z"
STARTUP = [
    f"[{T} INFO HostContext] Well known directory 'Bin': '/home/c/actions-runner/bin'",
    f"[{T} INFO Terminal] WRITE LINE: ",
    f"[{T} INFO Terminal] WRITE LINE: Current runner version: '2.321.0'",
    f"[{T} INFO Terminal] WRITE LINE: {T}: Listening for Jobs",
    f"[{T} INFO MessageListener] Connecting to the Runner Server...",
]
RUNNING = [f"[{T} INFO JobDispatcher] Job request 1234 for plan abc job def received.",
           f"[{T} INFO Terminal] WRITE LINE: {T}: Running job: build (fedora, nobara)"]
COMPLETED = [f"[{T} INFO JobDispatcher] finish job request for job def with result: Succeeded",
             f"[{T} INFO Terminal] WRITE LINE: {T}: Job build (fedora, nobara) completed with result: Succeeded"]
DELETED = [f"[{T} ERR  Terminal] WRITE ERROR: Failed to create a session. The runner registration has been deleted "
           "from the server, please re-configure. Runner registrations are automatically deleted for runners that "
           "have not connected to the service recently."]
CONNECT_ERROR = [f"[{T} ERR  Terminal] WRITE ERROR: {T}: Runner connect error: The HTTP request timed out after "
                 "00:01:00.. Retrying until reconnected."]
RECONNECTED = [f"[{T} INFO Terminal] WRITE LINE: {T}: Runner reconnected."]
EXITING = [f"[{T} INFO Terminal] WRITE LINE: Exiting..."]


def write_log(runner: Path, lines: list[str], name: str = "Runner_20261201-150000-utc.log") -> Path:
    diag = runner / "_diag"
    diag.mkdir(parents=True, exist_ok=True)
    path = diag / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("lines", "state", "detail", "job"), [
    (STARTUP, "listening", "listening for jobs", None),
    (STARTUP + RUNNING, "busy", "running a job", "build (fedora, nobara)"),
    (STARTUP + RUNNING + COMPLETED, "listening", "job completed", None),
    (STARTUP + DELETED, "offline", "registration deleted", None),
    (STARTUP + CONNECT_ERROR, "offline", "connect error, retrying", None),
    (STARTUP + CONNECT_ERROR + RECONNECTED, "listening", "reconnected", None),
    (STARTUP + RUNNING + COMPLETED + EXITING, "offline", "runner exited", None),
    (STARTUP[:1], "unknown", "nothing conclusive in Runner_20261201-150000-utc.log", None),
])
def test_the_latest_lines_decide_the_state(tmp_path: Path, lines: list[str], state: str, detail: str,
                                            job: str | None) -> None:
    write_log(tmp_path, lines)
    got = read_state(tmp_path)
    assert (got.state, got.detail, got.job) == (state, detail, job)


def test_the_newest_log_file_wins(tmp_path: Path) -> None:
    write_log(tmp_path, STARTUP + RUNNING, "Runner_20261130-090000-utc.log")
    write_log(tmp_path, STARTUP + DELETED, "Runner_20261201-150000-utc.log")
    (tmp_path / "_diag" / "Worker_20261201-160000-utc.log").write_text("\n".join(RUNNING))  # a job's own log
    assert latest_log(tmp_path / "_diag") == tmp_path / "_diag" / "Runner_20261201-150000-utc.log"
    assert read_state(tmp_path).state == "offline"


def test_a_job_name_quoting_another_line_does_not_pass_for_it(tmp_path: Path) -> None:
    sneaky = [f"[{T} INFO Terminal] WRITE LINE: {T}: Running job: x Listening for Jobs"]
    write_log(tmp_path, STARTUP + sneaky)
    got = read_state(tmp_path)
    assert (got.state, got.job) == ("busy", "x Listening for Jobs")


def test_other_trace_sources_quoting_the_texts_are_ignored(tmp_path: Path) -> None:
    quoted = [f"[{T} INFO JobDispatcher] Message text: Listening for Jobs",
              f"[{T} INFO Runner] WRITE LINE: {T}: Listening for Jobs"]
    write_log(tmp_path, STARTUP + RUNNING + quoted)
    assert read_state(tmp_path).state == "busy"


def test_control_characters_in_a_job_name_are_dropped_and_its_length_capped(tmp_path: Path) -> None:
    write_log(tmp_path, [f"[{T} INFO Terminal] WRITE LINE: {T}: Running job: a\x1b[31mb" + "c" * 500])
    job = read_state(tmp_path).job
    assert job is not None and "\x1b" not in job and len(job) == 200


def test_only_the_tail_of_a_long_log_is_read(tmp_path: Path) -> None:
    filler = [f"[{T} VERB Tracing] line {n} " + "x" * 100 for n in range(3000)]
    write_log(tmp_path, RUNNING + filler + STARTUP[3:4])
    assert read_state(tmp_path, tail_bytes=4096).state == "listening"


def test_no_diag_or_a_symlinked_log_is_unknown(tmp_path: Path) -> None:
    assert read_state(tmp_path).state == "unknown"
    outside = tmp_path / "elsewhere.log"
    outside.write_text("\n".join(STARTUP))
    (tmp_path / "_diag").mkdir()
    (tmp_path / "_diag" / "Runner_20261201-150000-utc.log").symlink_to(outside)
    assert read_state(tmp_path).state == "unknown"  # a job's symlink must not make us read another file


def systemctl(tmp_path: Path, answer: str) -> str:
    """A stand-in `systemctl` binary that records its argv and prints `answer` (systemd is not in the test box)."""
    script = tmp_path / "systemctl"
    script.write_text(f"#!{sys.executable}\nimport sys, pathlib\n"
                      f"pathlib.Path({str(tmp_path / 'argv')!r}).write_text(repr(sys.argv[1:]))\nprint({answer!r})\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.mark.parametrize(("answer", "service", "state"), [
    ("active", "active", "listening"), ("inactive", "inactive", "offline"), ("failed", "failed", "offline"),
    ("activating", "inactive", "offline"), ("gibberish", None, "listening"),
])
def test_the_service_unit_from_the_policy_is_asked_with_an_argv(tmp_path: Path, answer: str, service: str | None,
                                                                 state: str) -> None:
    write_log(tmp_path / "runner", STARTUP)
    host = HostSpec.from_mapping({"name": "h", "runner_dir": str(tmp_path / "runner"),
                                  "service": "actions.runner.Coldaine-ColdVox.laptop-extra.service"})
    listener, got = health.runner(host, systemctl=systemctl(tmp_path, answer))
    assert (got, listener.state) == (service, state)
    assert (tmp_path / "argv").read_text() == repr(["is-active", "--",
                                                    "actions.runner.Coldaine-ColdVox.laptop-extra.service"])


def test_an_invalid_unit_name_never_reaches_systemctl(tmp_path: Path) -> None:
    assert health.service_state("x; touch pwned", systemctl=systemctl(tmp_path, "active")) is None
    assert not (tmp_path / "argv").exists()
    assert health.service_state("x.service", systemctl=str(tmp_path / "no-such-systemctl")) is None


def test_memory_load_and_uptime_come_from_proc() -> None:
    if not os.path.exists("/proc/meminfo"):
        pytest.skip("no /proc")
    mem = health.memory()
    assert mem["total"] > mem["available"] > 0
    assert len(health.load()) == 3
    assert (health.uptime() or 0) > 0
