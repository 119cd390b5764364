"""`make demo` stops on Ctrl-C and on SIGTERM within 10 s, leaving nothing running (the real `python -m devtools.demo`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.supervise import alive, descendants
from tests.local_clone import clean_env, wait_until

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_demo_stops_everything_it_started_within_10_s(signum: int, tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "devtools.demo", "--port", "0"], cwd=ROOT,
                               env=clean_env(HOME=str(tmp_path)), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    started: set[int] = set()
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 240
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C to stop." in line or time.monotonic() > deadline:
                break
        assert "Ctrl-C to stop." in "".join(lines), "".join(lines)[-3000:]
        started = descendants(process.pid)
        assert len(started) >= 3, started  # redis-server, gunicorn (and its workers), the worker
        begin = time.monotonic()
        # Ctrl-C reaches the whole foreground group; SIGTERM comes to the demo alone, as from a service manager.
        if signum == signal.SIGINT:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        rest, _ = process.communicate(timeout=15)
        took = time.monotonic() - begin
        output = "".join(lines) + rest
        assert took < 10, took
        assert process.returncode == 0, output[-3000:]
        assert "Traceback" not in output, output[-3000:]
        assert wait_until(lambda: not [p for p in started if alive(p)], timeout=1), [p for p in started if alive(p)]
    finally:
        for pid in started | {process.pid}:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait()
