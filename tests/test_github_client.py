"""The calls runnerguard makes, end to end against the simulator: typed results and typed errors."""

from __future__ import annotations

import pytest
import redis

from devtools.github_simulator import SimulatorServer
from runnerguard.domain.signatures import verify
from runnerguard.github import (
    Conflict,
    Forbidden,
    GitHubApp,
    InstallationClient,
    NotFound,
    Unprocessable,
)
from runnerguard.github.models import Content
from runnerguard.store import keys
from tests.github_fixtures import APP_ID, REPO, WORKFLOW, WebhookReceiver

CI = ".github/workflows/ci.yml"


def branch_with_change(client: InstallationClient, repo: str, branch: str, files: dict[str, str | bytes | None]) -> str:
    head = client.get_branch_sha(repo, "main")
    client.create_ref(repo, f"refs/heads/{branch}", head)
    return client.commit_files(repo, branch=branch, files=files, message=f"Change on {branch}").sha


def test_get_repo_is_typed(installation_client: InstallationClient) -> None:
    repo = installation_client.get_repo(REPO)
    assert (repo.full_name, repo.owner, repo.name, repo.default_branch, repo.private) == (
        REPO, "octo-org", "hello-world", "main", False)


def test_workflow_file_is_read_through_contents_and_tree(installation_client: InstallationClient) -> None:
    content = installation_client.get_contents(REPO, CI, ref="main")
    assert isinstance(content, Content) and content.text == WORKFLOW
    head = installation_client.get_commit(REPO, installation_client.get_branch_sha(REPO, "main"))
    tree = installation_client.get_tree(REPO, head.tree_sha)
    assert tree.blobs()[CI].sha == content.sha
    assert {e.path for e in tree.entries if e.type == "tree"} == {".github", ".github/workflows", "src"}


def test_missing_file_and_repo_are_not_found(installation_client: InstallationClient) -> None:
    with pytest.raises(NotFound) as caught:
        installation_client.get_contents(REPO, "nope.yml")
    assert caught.value.status == 404 and caught.value.path == f"/repos/{REPO}/contents/nope.yml"
    with pytest.raises(NotFound):
        installation_client.get_repo("octo-org/unknown")


def test_branch_commit_and_pull_request_land_exactly_what_was_committed(
        github_sim: SimulatorServer, installation_client: InstallationClient) -> None:
    new_workflow = WORKFLOW.replace("[self-hosted, linux, gpu]", "ubuntu-latest")
    sha = branch_with_change(installation_client, REPO, "runnerguard/rollback", {CI: new_workflow, "README.md": None})
    pull = installation_client.create_pull(REPO, title="Roll back runs-on", head="runnerguard/rollback", base="main",
                                           body="Failure rate over 50%.")
    assert (pull.number, pull.state, pull.merged, pull.head_ref, pull.base_ref) == (
        1, "open", False, "runnerguard/rollback", "main")
    assert pull.head_sha == sha and pull.html_url.endswith("/pull/1")
    assert github_sim.files(REPO, "runnerguard/rollback") == {CI: new_workflow.encode(),
                                                              "src/app.py": b"print('hi')\n"}
    assert github_sim.file_text(REPO, CI) == WORKFLOW  # main untouched
    commit = installation_client.get_commit(REPO, sha)
    assert commit.parents == (github_sim.branches(REPO)["main"],)


def test_creating_an_existing_ref_is_unprocessable_already_exists(installation_client: InstallationClient) -> None:
    head = installation_client.get_branch_sha(REPO, "main")
    installation_client.create_ref(REPO, "refs/heads/x", head)
    with pytest.raises(Unprocessable) as caught:
        installation_client.create_ref(REPO, "refs/heads/x", head)
    assert caught.value.already_exists and caught.value.message == "Reference already exists"


def test_a_second_pull_for_the_same_head_is_already_exists(installation_client: InstallationClient) -> None:
    branch_with_change(installation_client, REPO, "fix", {"a.txt": "a"})
    installation_client.create_pull(REPO, title="one", head="fix", base="main")
    with pytest.raises(Unprocessable) as caught:
        installation_client.create_pull(REPO, title="two", head="fix", base="main")
    assert caught.value.already_exists
    assert "A pull request already exists for octo-org:fix." in caught.value.texts()


def test_a_pull_without_commits_is_refused(installation_client: InstallationClient) -> None:
    installation_client.create_ref(REPO, "refs/heads/same", installation_client.get_branch_sha(REPO, "main"))
    with pytest.raises(Unprocessable) as caught:
        installation_client.create_pull(REPO, title="nothing", head="same", base="main")
    assert caught.value.no_commits_between and not caught.value.already_exists


def test_non_fast_forward_update_needs_force(github_sim: SimulatorServer,
                                             installation_client: InstallationClient) -> None:
    old_main = installation_client.get_branch_sha(REPO, "main")
    moved = github_sim.push(REPO, {"b.txt": "b"})
    with pytest.raises(Unprocessable) as caught:
        installation_client.update_ref(REPO, "heads/main", old_main)
    assert caught.value.not_fast_forward
    assert installation_client.update_ref(REPO, "heads/main", old_main, force=True).sha == old_main
    assert github_sim.branches(REPO)["main"] == old_main != moved


def test_delete_ref_removes_the_branch(github_sim: SimulatorServer, installation_client: InstallationClient) -> None:
    installation_client.create_ref(REPO, "refs/heads/tmp", installation_client.get_branch_sha(REPO, "main"))
    installation_client.delete_ref(REPO, "heads/tmp")
    assert "tmp" not in github_sim.branches(REPO)
    with pytest.raises(NotFound):
        installation_client.get_ref(REPO, "heads/tmp")


def test_missing_workflows_permission_is_forbidden_and_named(
        github_sim: SimulatorServer, installation_client: InstallationClient, sim_repo: tuple[str, int]) -> None:
    github_sim.set_permission(sim_repo[1], "workflows", None)
    branch_with_change(installation_client, REPO, "docs", {"README.md": "# docs\n"})  # no workflow: fine
    with pytest.raises(Forbidden) as caught:
        branch_with_change(installation_client, REPO, "rollback", {CI: "on: push\n"})
    assert caught.value.missing_permission == "workflows"
    assert "without `workflows` permission" in str(caught.value)
    assert github_sim.branches(REPO)["rollback"] == github_sim.branches(REPO)["main"]  # the ref never moved


def test_list_pulls_filters_by_head_base_and_state(github_sim: SimulatorServer,
                                                   installation_client: InstallationClient) -> None:
    for name in ("a", "b", "c"):
        branch_with_change(installation_client, REPO, name, {f"{name}.txt": name})
        installation_client.create_pull(REPO, title=name, head=name, base="main")
    installation_client.update_pull(REPO, 2, state="closed")
    assert [p.title for p in installation_client.list_pulls(REPO)] == ["c", "a"]
    assert [p.title for p in installation_client.list_pulls(REPO, head="octo-org:a")] == ["a"]
    assert [p.title for p in installation_client.list_pulls(REPO, state="closed")] == ["b"]
    assert [p.number for p in installation_client.list_pulls(REPO, state="all", base="main", per_page=1)] == [3, 2, 1]
    assert installation_client.list_pulls(REPO, head="someone-else:a") == []


def test_update_pull_changes_title_body_and_state(installation_client: InstallationClient) -> None:
    branch_with_change(installation_client, REPO, "t", {"t.txt": "t"})
    installation_client.create_pull(REPO, title="old", head="t", base="main")
    updated = installation_client.update_pull(REPO, 1, title="new", body="body", state="closed")
    assert (updated.title, updated.body, updated.state) == ("new", "body", "closed")
    assert installation_client.get_pull(REPO, 1) == updated


def test_merged_pull_reads_back_as_merged(github_sim: SimulatorServer,
                                          installation_client: InstallationClient) -> None:
    branch_with_change(installation_client, REPO, "m", {"m.txt": "m"})
    installation_client.create_pull(REPO, title="m", head="m", base="main")
    github_sim.push(REPO, {"other.txt": "meanwhile"})
    github_sim.merge_pull(REPO, 1)
    pull = installation_client.get_pull(REPO, 1)
    assert pull.merged and pull.state == "closed"
    assert installation_client.list_pulls(REPO, state="closed")[0].merged
    assert {"m.txt", "other.txt"} <= set(github_sim.files(REPO))


def test_comment_and_labels_on_a_pull(github_sim: SimulatorServer, installation_client: InstallationClient) -> None:
    branch_with_change(installation_client, REPO, "l", {"l.txt": "l"})
    installation_client.create_pull(REPO, title="l", head="l", base="main")
    comment = installation_client.create_issue_comment(REPO, 1, "Rolled back: failure rate 62%.")
    assert comment.body == "Rolled back: failure rate 62%." and comment.html_url.endswith(f"#issuecomment-{comment.id}")
    assert installation_client.add_labels(REPO, 1, ["runnerguard", "rollback"]) == ["runnerguard", "rollback"]
    assert installation_client.add_labels(REPO, 1, ["rollback"]) == ["runnerguard", "rollback"]
    assert github_sim.comments(REPO, 1) == ["Rolled back: failure rate 62%."]
    with pytest.raises(NotFound):
        installation_client.create_issue_comment(REPO, 99, "no such issue")


def test_get_job_is_typed(github_sim: SimulatorServer, installation_client: InstallationClient) -> None:
    added = github_sim.add_job(REPO, name="gpu-tests", labels=["self-hosted", "gpu"], status="completed",
                               conclusion="failure", runner_name="gpu-3")
    job = installation_client.get_job(REPO, added.id)
    assert (job.id, job.run_id, job.name, job.labels, job.status, job.conclusion, job.runner_name) == (
        added.id, added.run_id, "gpu-tests", ("self-hosted", "gpu"), "completed", "failure", "gpu-3")
    assert job.completed_at is not None and job.completed_at.tzinfo is not None


def test_cancel_run_cancels_its_jobs_and_conflicts_once_completed(
        github_sim: SimulatorServer, installation_client: InstallationClient) -> None:
    job = github_sim.add_job(REPO, status="in_progress")
    installation_client.cancel_run(REPO, job.run_id)
    assert installation_client.get_job(REPO, job.id).conclusion == "cancelled"
    with pytest.raises(Conflict) as caught:
        installation_client.cancel_run(REPO, job.run_id)
    assert caught.value.status == 409


def test_installations_and_repo_lookup(github_sim: SimulatorServer, github_app: GitHubApp, redis_client: redis.Redis,
                                       sim_repo: tuple[str, int]) -> None:
    installations = github_app.list_installations()
    assert [(i.id, i.app_id, i.account_login) for i in installations] == [(sim_repo[1], APP_ID, "octo-org")]
    assert installations[0].permissions["workflows"] == "write"
    assert github_app.for_repo(REPO).installation_id == sim_repo[1]
    assert int(redis_client.get(keys.repo_installation(REPO)) or 0) == sim_repo[1]
    github_app.for_repo(REPO)
    assert sum(r.path.endswith("/installation") for r in github_sim.requests) == 1  # cached
    with pytest.raises(NotFound):
        github_app.get_repo_installation("octo-org/not-installed")


def test_list_installations_pages(github_sim: SimulatorServer, github_app: GitHubApp) -> None:
    for n in range(5):
        github_sim.add_repo(f"org{n}/r", {"f": "x"})
        github_sim.install([f"org{n}/r"])
    assert len(github_app.list_installations(per_page=2)) == 5


@pytest.mark.usefixtures("sim_repo")
def test_failed_delivery_is_listed_and_redelivered_signed(github_sim: SimulatorServer, github_app: GitHubApp,
                                                          webhook_receiver: WebhookReceiver) -> None:
    github_sim.configure_webhook(webhook_receiver.url, "hook-secret")
    webhook_receiver.status = 500
    job = github_sim.add_job(REPO)
    first = github_sim.emit_workflow_job(REPO, job.id, "queued")
    failed = github_app.list_hook_deliveries(status="failure")
    assert [d.guid for d in failed] == [first.guid] and failed[0].status_code == 500
    assert (failed[0].event, failed[0].action, failed[0].redelivery) == ("workflow_job", "queued", False)
    detail = github_app.get_hook_delivery(failed[0].id)
    assert detail.request_payload is not None and detail.request_payload["workflow_job"]["id"] == job.id
    webhook_receiver.status = 202
    github_app.redeliver(failed[0].id)
    original, again = webhook_receiver.received
    assert again.body == original.body
    assert again.headers["X-Github-Delivery"] == first.guid
    assert verify(["hook-secret"], again.body, again.headers["X-Hub-Signature-256"])
    newest = github_app.list_hook_deliveries()[0]
    assert newest.redelivery and newest.ok and newest.guid == first.guid


def test_rate_limit_reads_the_core_budget(github_app: GitHubApp) -> None:
    rate = github_app.rate_limit()
    assert rate.limit == 5000 and 0 < rate.remaining <= 5000 and rate.used == rate.limit - rate.remaining
