"""`make demo` works end to end: a week of one failing laptop runner leads to a rollback PR whose links open."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devtools import demo
from devtools.supervise import alive, descendants

ROOT = Path(__file__).resolve().parents[1]
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def test_the_week_never_runs_more_jobs_at_once_than_the_pool_has_runners() -> None:
    now = time.time()
    events = demo.week(now, random.Random(3), web="http://127.0.0.1:9")
    running, peak, queued, started = 0, 0, {}, {}
    for when, payload in events:
        assert when < now  # nothing from the future
        job, action = payload["workflow_job"], payload["action"]
        if action == "queued":
            queued[job["id"]] = when
        elif action == "in_progress":
            started[job["id"]] = when
            running += 1
            peak = max(peak, running)
        else:
            running -= 1
        assert job["html_url"].startswith("http://127.0.0.1:9/Coldaine/ColdVox/actions/runs/")
    assert peak == 1  # one laptop runner
    waits = sorted(started[j] - queued[j] for j in started)
    assert waits[len(waits) // 2] > 120  # jobs queued together wait for the one runner, in turn
    assert 100 <= len(queued) <= 250  # a laptop's week, not a data centre's


@pytest.fixture()
def running_demo(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    process = subprocess.Popen([sys.executable, "-m", "devtools.demo", "--port", "0"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    started: set[int] = set()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C to stop." in line:
                break
        output = "".join(lines)
        assert "Ctrl-C to stop." in output, output[-3000:]
        started = descendants(process.pid)
        yield output, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=15)
        finally:
            for pid in started | {process.pid}:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


def login(base: str, token: str) -> dict[str, str]:
    """The session cookie, carried by hand: it is Secure, which requests honours even on loopback."""
    page = requests.get(f"{base}/login", timeout=10)
    csrf = CSRF_RE.search(page.text)
    assert csrf
    cookie = {"Cookie": f"runnerguard_session={page.cookies['runnerguard_session']}"}
    answer = requests.post(f"{base}/login", data={"token": token, "csrf_token": csrf.group(1), "next": "/"},
                           headers=cookie, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return {"Cookie": f"runnerguard_session={answer.cookies['runnerguard_session']}"}


@pytest.mark.slow
def test_the_demos_printed_links_open_the_pr_its_diff_and_the_dashboard(running_demo) -> None:  # type: ignore[no-untyped-def]
    output, _ = running_demo
    assert "rollback PR #1: Roll back laptop to ubuntu-latest:" in output and "jobs failed in 24h" in output
    base = re.search(r"dashboard (http://127\.0\.0\.1:\d+)/", output).group(1)  # type: ignore[union-attr]
    token = re.search(r"admin token: ([^)\s]+)", output).group(1)  # type: ignore[union-attr]
    simulator = re.search(r"GitHub simulator (http://127\.0\.0\.1:\d+)", output).group(1)  # type: ignore[union-attr]
    assert "github.com" not in output
    pr_page = re.search(r"^\s+(http://\S+/pull/1)$", output, re.M).group(1)  # type: ignore[union-attr]
    diff_url = re.search(r"its diff: (\S+)", output).group(1)  # type: ignore[union-attr]
    assert pr_page == f"{simulator}/Coldaine/ColdVox/pull/1" and diff_url == pr_page + ".diff"

    diff = requests.get(diff_url, timeout=10)
    assert diff.status_code == 200 and diff.headers["Content-Type"].startswith("text/plain")
    assert diff.text.startswith("diff --git a/.github/workflows/")
    assert "\n-    runs-on: [self-hosted, Linux, X64, fedora, nobara]\n+    runs-on: ubuntu-latest\n" in diff.text
    assert "lint-docs" not in "".join(line for line in diff.text.splitlines(True) if line[:1] in "+-")
    page = requests.get(pr_page, timeout=10)
    assert page.status_code == 200 and "Roll back laptop to ubuntu-latest" in page.text

    admin = {"Authorization": f"Bearer {token}"}
    rows = {r["metric"]: r for r in requests.get(f"{base}/api/scorecard", headers=admin, timeout=10).json()["rows"]}
    assert rows["peak_concurrency"]["actual"] == 1 and rows["peak_concurrency"]["target"] == ">= 1"
    deadline = time.monotonic() + 20  # the PR exists; the worker records it just after GitHub answers
    while not (rollbacks := requests.get(f"{base}/api/rollbacks", headers=admin, timeout=10).json()["rollbacks"]):
        assert time.monotonic() < deadline, "no rollback state recorded"
        time.sleep(0.2)
    assert rollbacks[0]["pr_url"] == pr_page

    html = requests.get(f"{base}/", headers=login(base, token), timeout=10).text
    assert 'data-pool="laptop" data-state="pr_open"' in html and f'href="{pr_page}"' in html
    job_links = re.findall(rf'href="({re.escape(simulator)}/Coldaine/ColdVox/actions/runs/\d+/job/\d+)"', html)
    assert job_links and requests.get(job_links[0], timeout=10).status_code == 200
    assert requests.get(f"{base}/favicon.ico", timeout=10).status_code == 200
