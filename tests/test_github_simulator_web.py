"""The simulator's stand-ins for GitHub's web pages: a PR, its unified diff, a job's page (what `make demo` links)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from devtools.github_simulator import SimulatorServer
from tests.github_fixtures import APP_ID, FakeClock, make_app

REPO = "octo/app"
WORKFLOW = "jobs:\n  build:\n    runs-on: [self-hosted, linux]\n    steps:\n      - run: make\n"
BRANCH = "runnerguard/rollback/laptop"


@pytest.fixture()
def sim(app_public_pem: bytes, app_key: RSAPrivateKey, redis_client: redis.Redis) -> Iterator[tuple[SimulatorServer, str]]:
    """The simulator serving its own pages, with PR #1 that rewrites runs-on, deletes a file and adds one."""
    clock = FakeClock()
    with SimulatorServer(app_id=APP_ID, app_public_key_pem=app_public_pem, own_web_url=True, clock=clock) as server:
        server.add_repo(REPO, {".github/workflows/ci.yml": WORKFLOW, "README.md": "# app\n", "old.txt": "bye\n"})
        token = make_app(server, app_key, redis_client, clock).installation_token(server.install([REPO]))
        server.sim.repo(REPO).refs[f"refs/heads/{BRANCH}"] = server.branches(REPO)["main"]  # branch off main
        server.push(REPO, {".github/workflows/ci.yml": WORKFLOW.replace("[self-hosted, linux]", "ubuntu-latest"),
                           "old.txt": None, "new.txt": "hello"}, branch=BRANCH)
        answer = requests.post(f"{server.url}/repos/{REPO}/pulls", timeout=5,
                               headers={"Authorization": f"token {token}"},
                               json={"title": "Roll back <laptop>", "head": BRANCH, "base": "main",
                                     "body": "<script>alert(1)</script>"})
        assert answer.status_code == 201, answer.text
        yield server, answer.json()["html_url"]


EXPECTED_DIFF = """\
diff --git a/.github/workflows/ci.yml b/.github/workflows/ci.yml
--- a/.github/workflows/ci.yml
+++ b/.github/workflows/ci.yml
@@ -1,5 +1,5 @@
 jobs:
   build:
-    runs-on: [self-hosted, linux]
+    runs-on: ubuntu-latest
     steps:
       - run: make
diff --git a/new.txt b/new.txt
--- /dev/null
+++ b/new.txt
@@ -0,0 +1 @@
+hello
\\ No newline at end of file
diff --git a/old.txt b/old.txt
--- a/old.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
"""


def test_the_prs_html_url_is_a_page_of_the_simulator_with_its_diff(sim: tuple[SimulatorServer, str]) -> None:
    server, html_url = sim
    assert html_url == f"{server.url}/{REPO}/pull/1"
    page = requests.get(html_url, timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "Roll back &lt;laptop&gt;" in page.text and "<script>" not in page.text  # payload text is escaped
    assert "-    runs-on: [self-hosted, linux]" in page.text and f'href="/{REPO}/pull/1.diff"' in page.text
    diff = requests.get(html_url + ".diff", timeout=5)
    assert diff.status_code == 200 and diff.headers["Content-Type"].startswith("text/plain")
    assert diff.text == EXPECTED_DIFF


def test_a_merged_pr_keeps_its_diff(sim: tuple[SimulatorServer, str]) -> None:
    server, html_url = sim
    server.merge_pull(REPO, 1)
    assert requests.get(html_url + ".diff", timeout=5).text == EXPECTED_DIFF
    assert "<b>merged</b>" in requests.get(html_url, timeout=5).text


def test_unknown_pages_are_404_and_pages_are_not_api_requests(sim: tuple[SimulatorServer, str]) -> None:
    server, html_url = sim
    before = len(server.requests)
    assert requests.get(f"{server.url}/{REPO}/pull/2", timeout=5).status_code == 404
    assert requests.get(f"{server.url}/octo/ghost/pull/1.diff", timeout=5).status_code == 404
    assert requests.get(html_url, timeout=5).status_code == 200
    assert len(server.requests) == before  # neither recorded nor counted against a rate limit


def test_a_job_page_answers_for_jobs_it_knows_and_jobs_sent_only_as_webhooks(sim: tuple[SimulatorServer, str]) -> None:
    server, _ = sim
    job = server.add_job(REPO, name="build <x>", labels=["self-hosted"])
    known = requests.get(f"{server.url}/{REPO}/actions/runs/{job.run_id}/job/{job.id}", timeout=5)
    assert known.status_code == 200 and "build &lt;x&gt;" in known.text
    webhook_only = requests.get(f"{server.url}/{REPO}/actions/runs/9/job/99", timeout=5)
    assert webhook_only.status_code == 200 and "Job 99" in webhook_only.text


def test_without_own_web_url_the_simulator_hands_out_github_com_urls(app_public_pem: bytes) -> None:
    with SimulatorServer(app_id=APP_ID, app_public_key_pem=app_public_pem) as server:
        assert server.web_url == "https://github.com"
