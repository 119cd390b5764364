"""The GitHub simulator itself, over HTTP: git objects like git's, GitHub's errors, auth, failures, webhooks."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from devtools.github_simulator import ObjectStore, SimulatorServer
from devtools.github_simulator.errors import ApiError
from runnerguard.domain.signatures import verify
from runnerguard.github import GitHubApp
from tests.github_fixtures import APP_ID, REPO, FakeClock, WebhookReceiver

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="the git CLI is not installed")


@pytest.fixture()
def token(github_app: GitHubApp, sim_repo: tuple[str, int]) -> str:
    return github_app.installation_token(sim_repo[1])


def get(github_sim: SimulatorServer, path: str, token: str | None = None, **params: str) -> requests.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.get(github_sim.url + path, headers=headers, params=params, timeout=5)


def post(github_sim: SimulatorServer, path: str, token: str | None, body: object) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(github_sim.url + path, headers=headers, json=body, timeout=5)


def git(cwd: Path, *args: str, **env: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env=os.environ | env).stdout.strip()


@needs_git
def test_blob_tree_and_commit_shas_are_gits(tmp_path: Path) -> None:
    store = ObjectStore()
    files = {"README.md": b"# hi\n", ".github/workflows/ci.yml": b"on: push\n", "src/a/b.py": b"x = 1\n",
             "src-file": b"sorts before src/\n"}
    tree = store.tree_from_files({p: ("100644", store.put_blob(d)) for p, d in files.items()})
    commit = store.put_commit(tree, [], "Initial commit", name="Sim", email="sim@example.invalid",
                              timestamp=1_700_000_000)
    git(tmp_path, "init", "-q")
    for path, data in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    git(tmp_path, "add", "-A")
    assert git(tmp_path, "write-tree") == tree
    assert git(tmp_path, "hash-object", "README.md") == store.put_blob(b"# hi\n")
    ident = {"GIT_AUTHOR_NAME": "Sim", "GIT_AUTHOR_EMAIL": "sim@example.invalid", "GIT_COMMITTER_NAME": "Sim",
             "GIT_COMMITTER_EMAIL": "sim@example.invalid", "GIT_AUTHOR_DATE": "1700000000 +0000",
             "GIT_COMMITTER_DATE": "1700000000 +0000"}
    assert git(tmp_path, "commit-tree", tree, "-m", "Initial commit", **ident) == commit.sha


def test_unknown_route_and_repo_answer_githubs_404(github_sim: SimulatorServer, token: str) -> None:
    for path in ("/nope", f"/repos/{REPO}/nope", "/repos/octo-org/unknown"):
        answer = get(github_sim, path, token)
        assert answer.status_code == 404
        assert answer.json()["message"] == "Not Found" and answer.json()["documentation_url"].startswith("https://")


def test_repo_endpoints_need_a_token(github_sim: SimulatorServer, sim_repo: tuple[str, int]) -> None:
    answer = get(github_sim, f"/repos/{REPO}")
    assert answer.status_code == 401 and answer.json()["message"] == "Bad credentials"


def test_app_endpoints_refuse_an_installation_token(github_sim: SimulatorServer, token: str) -> None:
    assert get(github_sim, "/app/installations", token).status_code == 401


def test_every_answer_carries_rate_limit_headers(github_sim: SimulatorServer, token: str) -> None:
    for answer in (get(github_sim, f"/repos/{REPO}", token), get(github_sim, "/missing", token)):
        assert answer.headers["x-ratelimit-limit"] == "5000"
        assert int(answer.headers["x-ratelimit-remaining"]) < 5000
        assert {"x-ratelimit-reset", "x-ratelimit-used", "x-ratelimit-resource"} <= set(answer.headers)


def test_empty_repository_is_a_409(github_sim: SimulatorServer, github_app: GitHubApp) -> None:
    github_sim.add_repo("octo-org/empty")
    token = github_app.installation_token(github_sim.install(["octo-org/empty"]))
    answer = get(github_sim, "/repos/octo-org/empty/git/ref/heads/main", token)
    assert answer.status_code == 409 and answer.json()["message"] == "Git Repository is empty."


def test_contents_are_base64_wrapped_like_githubs(github_sim: SimulatorServer, github_app: GitHubApp) -> None:
    data = bytes(range(256)) * 3
    github_sim.add_repo("octo-org/bin", {"blob.bin": data})
    token = github_app.installation_token(github_sim.install(["octo-org/bin"]))
    body = get(github_sim, "/repos/octo-org/bin/contents/blob.bin", token, ref="main").json()
    assert all(len(line) <= 60 for line in body["content"].splitlines())
    assert base64.b64decode(body["content"]) == data and body["size"] == len(data)


def test_tree_with_base_tree_adds_and_deletes(github_sim: SimulatorServer, token: str) -> None:
    main = get(github_sim, f"/repos/{REPO}/git/ref/heads/main", token).json()["object"]["sha"]
    base_tree = get(github_sim, f"/repos/{REPO}/git/commits/{main}", token).json()["tree"]["sha"]
    answer = post(github_sim, f"/repos/{REPO}/git/trees", token, {"base_tree": base_tree, "tree": [
        {"path": "new/file.txt", "mode": "100644", "type": "blob", "content": "fresh"},
        {"path": "README.md", "mode": "100644", "type": "blob", "sha": None},
    ]})
    assert answer.status_code == 201
    listing = get(github_sim, f"/repos/{REPO}/git/trees/{answer.json()['sha']}", token, recursive="1").json()
    paths = {e["path"] for e in listing["tree"] if e["type"] == "blob"}
    assert paths == {"new/file.txt", ".github/workflows/ci.yml", "src/app.py"}


def test_commit_with_an_unknown_parent_is_unprocessable(github_sim: SimulatorServer, token: str) -> None:
    main = get(github_sim, f"/repos/{REPO}/git/ref/heads/main", token).json()["object"]["sha"]
    tree = get(github_sim, f"/repos/{REPO}/git/commits/{main}", token).json()["tree"]["sha"]
    body = {"message": "m", "tree": tree, "parents": ["0" * 40]}
    answer = post(github_sim, f"/repos/{REPO}/git/commits", token, body)
    assert answer.status_code == 422


def test_pull_errors_match_githubs(github_sim: SimulatorServer, token: str) -> None:
    same = post(github_sim, f"/repos/{REPO}/pulls", token, {"title": "t", "head": "main", "base": "main"})
    assert same.status_code == 422 and same.json()["errors"][0]["message"] == "No commits between main and main"
    missing = post(github_sim, f"/repos/{REPO}/pulls", token, {"title": "t", "head": "ghost", "base": "main"})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "head"
    assert get(github_sim, f"/repos/{REPO}/pulls/77", token).status_code == 404


def test_pull_listing_pages_with_link_headers(github_sim: SimulatorServer, token: str) -> None:
    for n in range(3):
        github_sim.push(REPO, {f"{n}.txt": str(n)}, branch=f"b{n}")
        assert post(github_sim, f"/repos/{REPO}/pulls", token, {"title": str(n), "head": f"b{n}", "base": "main"}
                    ).status_code == 201
    first = get(github_sim, f"/repos/{REPO}/pulls", token, per_page="2")
    assert [p["number"] for p in first.json()] == [3, 2]
    second = requests.get(first.links["next"]["url"], headers={"Authorization": f"token {token}"}, timeout=5)
    assert [p["number"] for p in second.json()] == [1] and "next" not in second.links


def test_new_branch_at_an_existing_commit_needs_no_workflows_permission(
        github_sim: SimulatorServer, token: str, sim_repo: tuple[str, int]) -> None:
    github_sim.set_permission(sim_repo[1], "workflows", None)
    main = github_sim.branches(REPO)["main"]
    assert post(github_sim, f"/repos/{REPO}/git/refs", token, {"ref": "refs/heads/copy", "sha": main}
                ).status_code == 201


def test_missing_pull_requests_permission_names_it(github_sim: SimulatorServer, token: str,
                                                   sim_repo: tuple[str, int]) -> None:
    github_sim.set_permission(sim_repo[1], "pull_requests", "read")
    answer = post(github_sim, f"/repos/{REPO}/pulls", token, {"title": "t", "head": "main", "base": "main"})
    assert answer.status_code == 403
    assert answer.headers["X-Accepted-GitHub-Permissions"] == "pull_requests=write"


def test_merge_conflict_is_refused(github_sim: SimulatorServer, token: str) -> None:
    github_sim.push(REPO, {"README.md": "branch side\n"}, branch="side")
    assert post(github_sim, f"/repos/{REPO}/pulls", token, {"title": "t", "head": "side", "base": "main"}
                ).status_code == 201
    github_sim.push(REPO, {"README.md": "main side\n"})
    with pytest.raises(ApiError, match=r"Merge conflict in README\.md"):
        github_sim.merge_pull(REPO, 1)


def test_primary_exhaustion_lasts_until_reset(github_sim: SimulatorServer, token: str, fake_clock: FakeClock) -> None:
    github_sim.fail_next(1, "primary", reset_in=100)
    for _ in range(2):
        answer = get(github_sim, f"/repos/{REPO}", token)
        assert answer.status_code == 403 and answer.headers["x-ratelimit-remaining"] == "0"
        assert int(answer.headers["x-ratelimit-reset"]) >= int(fake_clock()) + 99
    fake_clock.advance(101)
    assert get(github_sim, f"/repos/{REPO}", token).status_code == 200


def test_slow_answers_are_slow(github_sim: SimulatorServer, token: str) -> None:
    github_sim.slow_next(1, 0.3)
    started = time.monotonic()
    assert get(github_sim, f"/repos/{REPO}", token).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_token_lifetime_is_configurable(github_sim: SimulatorServer, github_app: GitHubApp,
                                        sim_repo: tuple[str, int], fake_clock: FakeClock) -> None:
    github_sim.sim.token_lifetime = 120
    minted = github_app.create_installation_token(sim_repo[1])
    assert abs(minted.expires_at - (fake_clock() + 120)) <= 1
    with pytest.raises(Exception, match="Not Found"):
        github_app.create_installation_token(999)


def test_webhooks_are_signed_with_githubs_headers(github_sim: SimulatorServer, sim_repo: tuple[str, int],
                                                  webhook_receiver: WebhookReceiver) -> None:
    job = github_sim.add_job(REPO, labels=["self-hosted", "gpu"])
    payload = github_sim.workflow_job_payload(REPO, job.id, "queued")
    delivery = github_sim.send_webhook(webhook_receiver.url, "workflow_job", payload, "s3cret")
    (received,) = webhook_receiver.received
    assert verify(["s3cret"], received.body, received.headers["X-Hub-Signature-256"])
    assert received.headers["X-Github-Event"] == "workflow_job"
    assert received.headers["X-Github-Delivery"] == delivery.guid
    assert received.headers["X-Github-Hook-Installation-Target-Id"] == str(APP_ID)
    assert received.headers["X-Github-Hook-Installation-Target-Type"] == "integration"
    assert "X-Github-Hook-Id" in received.headers
    assert delivery.status_code == 202 and delivery.installation_id == sim_repo[1]
    assert payload["workflow_job"]["labels"] == ["self-hosted", "gpu"]


def test_unreachable_webhook_url_is_recorded_as_failed(github_sim: SimulatorServer) -> None:
    delivery = github_sim.send_webhook("http://127.0.0.1:9/hook", "ping", {"zen": "x"}, "s")
    assert delivery.status_code == 0 and "failed to connect" in delivery.status


def test_bad_delivery_cursor_is_a_400(github_sim: SimulatorServer, github_app: GitHubApp) -> None:
    answer = requests.get(f"{github_sim.url}/app/hook/deliveries", params={"cursor": "garbage"},
                          headers={"Authorization": f"Bearer {github_app.app_jwt()}"}, timeout=5)
    assert answer.status_code == 400


def test_control_api_over_http_drives_a_scenario(github_sim: SimulatorServer, github_app: GitHubApp,
                                                 webhook_receiver: WebhookReceiver) -> None:
    def control(path: str, body: object) -> dict[str, object]:
        answer = requests.post(f"{github_sim.url}/_sim{path}", json=body, timeout=5)
        assert answer.status_code in (200, 201), answer.text
        return answer.json()  # type: ignore[no-any-return]

    control("/repos", {"full_name": "demo/app", "files": {"a.txt": "a"}})
    installation = control("/installations", {"repos": ["demo/app"]})["id"]
    assert github_app.installation(int(str(installation))).get_repo("demo/app").name == "app"
    control("/failures", {"n": 1, "status": 500, "match": "/repos/demo/app/git"})
    job = control("/repos/demo/app/jobs", {"labels": ["self-hosted"]})
    control("/webhook", {"url": webhook_receiver.url, "secret": "s"})
    sent = control("/webhooks", {"repo": "demo/app", "job_id": job["id"], "action": "queued"})
    assert sent["status_code"] == 202 and len(webhook_receiver.received) == 1
    files = requests.get(f"{github_sim.url}/_sim/repos/demo/app/files", timeout=5).json()
    assert files == {"a.txt": "a"}
    log = requests.get(f"{github_sim.url}/_sim/requests", timeout=5).json()
    assert any(r["path"] == "/repos/demo/app" and r["status"] == 200 for r in log)
    assert github_sim.failures  # the queued failure waits for a matching request


def test_simulator_runs_as_a_separate_process(tmp_path: Path, app_key_pem: bytes) -> None:
    key = tmp_path / "app.pem"
    key.write_bytes(app_key_pem)
    process = subprocess.Popen([sys.executable, "-m", "devtools.github_simulator", "--app-id", "7", "--key", str(key)],
                               stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[3]
        answer = requests.post(f"{url}/_sim/repos", json={"full_name": "demo/x", "files": {"a": "b"}}, timeout=5)
        assert answer.status_code == 201
        assert requests.get(f"{url}/_sim/repos/demo/x/files", timeout=5).json() == {"a": "b"}
    finally:
        process.terminate()
        process.wait(timeout=10)
