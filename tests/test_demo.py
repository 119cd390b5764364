"""`make demo` works end to end: a week of a failing laptop pool leads to a rollback PR in the simulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_plays_a_week_and_opens_the_rollback_pr() -> None:
    result = subprocess.run([sys.executable, "-m", "devtools.demo", "--port", "0", "--check"], check=False, cwd=ROOT,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "rollback PR #1: Roll back laptop to ubuntu-latest:" in result.stdout
    assert "jobs failed in 24h" in result.stdout
