"""Every answer shape the client reads from the simulator conforms to GitHub's OpenAPI description."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from devtools.github_simulator import SimulatorServer
from devtools.github_simulator.actions import step
from runnerguard.github import GitHubApp, InstallationClient
from tests.github_fixtures import REPO, WebhookReceiver

ROOT = "urn:github-openapi-subset"


def to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema objects as JSON Schema draft 7: `nullable` becomes a null type, refs become absolute."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: to_json_schema(value) for key, value in node.items()}
    if isinstance(out.get("$ref"), str) and out["$ref"].startswith("#/"):
        out["$ref"] = ROOT + out["$ref"]
    if out.pop("nullable", False) is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [{"type": "null"}, out]}
    return out


@cache
def _document(path: Path) -> dict[str, Any]:
    return to_json_schema(json.loads(path.read_text()))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def openapi(shared_dir: Path) -> dict[str, Any]:
    return _document(shared_dir / "fixtures/github/openapi-subset.json")


def response_schema(doc: dict[str, Any], method: str, template: str, status: int) -> dict[str, Any] | None:
    """The JSON schema of one documented answer (None when the answer has no body)."""
    operation = doc["paths"][template][method.lower()]
    assert str(status) in operation["responses"], f"{method} {template} does not document HTTP {status}"
    response = operation["responses"][str(status)]
    if "$ref" in response:  # a shared response in components/responses
        response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    content = response.get("content", {}).get("application/json")
    return None if content is None else content["schema"]


def validate(doc: dict[str, Any], method: str, template: str, answer: requests.Response) -> None:
    schema = response_schema(doc, method, template, answer.status_code)
    if schema is None:
        return
    registry = Registry().with_resource(ROOT, Resource.from_contents(doc, default_specification=DRAFT7))
    validator = Draft7Validator(schema, registry=registry)
    problems = sorted(validator.iter_errors(answer.json()), key=lambda e: list(e.absolute_path))
    assert not problems, "\n".join(f"{list(e.absolute_path)}: {e.message[:200]}" for e in problems[:10])


@dataclass
class World:
    sim: SimulatorServer
    app: GitHubApp
    client: InstallationClient
    installation_id: int
    token: str
    job_id: int
    run_id: int
    delivery_id: int

    def call(self, method: str, path: str, body: object = None, *, app: bool = False, **params: str
             ) -> requests.Response:
        credential = self.app.app_jwt() if app else self.token
        return requests.request(method, self.sim.url + path, json=body, params=params, timeout=5,
                                headers={"Authorization": f"Bearer {credential}",
                                         "Accept": "application/vnd.github+json"})

    @property
    def main(self) -> str:
        return self.sim.branches(REPO)["main"]


@pytest.fixture()
def world(github_sim: SimulatorServer, github_app: GitHubApp, sim_repo: tuple[str, int],
          webhook_receiver: WebhookReceiver) -> World:
    client = github_app.installation(sim_repo[1])
    client.create_ref(REPO, "refs/heads/feature", client.get_branch_sha(REPO, "main"))
    client.commit_files(REPO, branch="feature", files={"f.txt": "f"}, message="feature")
    client.create_pull(REPO, title="Feature", head="feature", base="main", body="b")
    client.create_issue_comment(REPO, 1, "hello")
    client.add_labels(REPO, 1, ["runnerguard"])
    job = github_sim.add_job(REPO, status="in_progress", runner_name="r1")
    github_sim.configure_webhook(webhook_receiver.url, "s")
    delivery = github_sim.emit_workflow_job(REPO, job.id, "in_progress")
    return World(github_sim, github_app, client, sim_repo[1], github_app.installation_token(sim_repo[1]), job.id,
                 job.run_id, delivery.id)


def _tree_sha(w: World) -> str:
    return str(w.call("GET", f"/repos/{REPO}/git/commits/{w.main}").json()["tree"]["sha"])


def _new_pull(w: World) -> requests.Response:
    w.sim.push(REPO, {"second.txt": "2"}, branch="second")
    answer = w.call("POST", f"{R}/pulls", {"title": "Second", "head": "second", "base": "main", "body": None})
    assert answer.status_code == 201
    return answer


def _fork_run(w: World) -> requests.Response:
    run = w.sim.add_run(REPO, event="pull_request", head_repository="mallory/hello-world", head_sha="f" * 40)
    return w.call("GET", f"{R}/actions/runs/{run.id}")


def _rerun_run(w: World) -> requests.Response:
    run = w.sim.add_run(REPO, status="completed", conclusion="failure")
    job = w.sim.add_job(REPO, run_id=run.id, status="completed", conclusion="failure")
    assert w.call("POST", f"{R}/actions/jobs/{job.id}/rerun").status_code == 201
    return w.call("GET", f"{R}/actions/runs/{run.id}")


def _job_with_steps(w: World) -> requests.Response:
    job = w.sim.add_job(REPO, status="in_progress", steps=[
        step(1, "Set up job", started_at="2026-01-01T00:00:00Z", completed_at="2026-01-01T00:00:02Z"),
        step(2, "Run tests", "in_progress", None, started_at="2026-01-01T00:00:02Z"), step(3, "Post", "queued", None)])
    w.call("POST", f"{R}/actions/runs/{job.run_id}/cancel")
    return w.call("GET", f"{R}/actions/jobs/{job.id}")


def _comment_on_an_issue(w: World) -> requests.Response:
    number = w.client.create_issue(REPO, title="outage").number
    return w.call("POST", f"{R}/issues/{number}/comments", {"body": "still down"})


R = f"/repos/{REPO}"
CASES: list[tuple[str, str, Callable[[World], requests.Response]]] = [
    ("POST", "/app/installations/{installation_id}/access_tokens",
     lambda w: w.call("POST", f"/app/installations/{w.installation_id}/access_tokens", app=True)),
    ("GET", "/app", lambda w: w.call("GET", "/app", app=True)),
    ("GET", "/app/installations", lambda w: w.call("GET", "/app/installations", app=True)),
    ("GET", "/repos/{owner}/{repo}/installation", lambda w: w.call("GET", f"{R}/installation", app=True)),
    ("GET", "/app/hook/deliveries", lambda w: w.call("GET", "/app/hook/deliveries", app=True)),
    ("GET", "/app/hook/deliveries/{delivery_id}",
     lambda w: w.call("GET", f"/app/hook/deliveries/{w.delivery_id}", app=True)),
    ("POST", "/app/hook/deliveries/{delivery_id}/attempts",
     lambda w: w.call("POST", f"/app/hook/deliveries/{w.delivery_id}/attempts", app=True)),
    ("GET", "/repos/{owner}/{repo}", lambda w: w.call("GET", R)),
    ("GET", "/repos/{owner}/{repo}", lambda w: w.call("GET", "/repos/octo-org/missing")),
    ("GET", "/repos/{owner}/{repo}/contents/{path}",
     lambda w: w.call("GET", f"{R}/contents/.github/workflows/ci.yml", ref="main")),
    ("GET", "/repos/{owner}/{repo}/contents/{path}", lambda w: w.call("GET", f"{R}/contents/missing.txt")),
    ("GET", "/repos/{owner}/{repo}/git/ref/{ref}", lambda w: w.call("GET", f"{R}/git/ref/heads/main")),
    ("GET", "/repos/{owner}/{repo}/git/ref/{ref}", lambda w: w.call("GET", f"{R}/git/ref/heads/missing")),
    ("POST", "/repos/{owner}/{repo}/git/refs",
     lambda w: w.call("POST", f"{R}/git/refs", {"ref": "refs/heads/new", "sha": w.main})),
    ("POST", "/repos/{owner}/{repo}/git/refs",
     lambda w: w.call("POST", f"{R}/git/refs", {"ref": "refs/heads/main", "sha": w.main})),
    ("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}",
     lambda w: w.call("PATCH", f"{R}/git/refs/heads/feature", {"sha": w.sim.branches(REPO)["feature"]})),
    ("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}",
     lambda w: w.call("PATCH", f"{R}/git/refs/heads/feature", {"sha": w.main, "force": False})),
    ("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}",
     lambda w: w.call("GET", f"{R}/git/trees/{_tree_sha(w)}", recursive="1")),
    ("POST", "/repos/{owner}/{repo}/git/trees",
     lambda w: w.call("POST", f"{R}/git/trees", {"base_tree": _tree_sha(w), "tree": [
         {"path": "x.txt", "mode": "100644", "type": "blob", "content": "x"}]})),
    ("POST", "/repos/{owner}/{repo}/git/commits",
     lambda w: w.call("POST", f"{R}/git/commits", {"message": "m", "tree": _tree_sha(w), "parents": [w.main]})),
    ("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}", lambda w: w.call("GET", f"{R}/git/commits/{w.main}")),
    ("POST", "/repos/{owner}/{repo}/git/blobs",
     lambda w: w.call("POST", f"{R}/git/blobs", {"content": "aGk=", "encoding": "base64"})),
    ("GET", "/repos/{owner}/{repo}/pulls", lambda w: w.call("GET", f"{R}/pulls", state="all")),
    ("POST", "/repos/{owner}/{repo}/pulls", _new_pull),
    ("POST", "/repos/{owner}/{repo}/pulls",
     lambda w: w.call("POST", f"{R}/pulls", {"title": "dup", "head": "feature", "base": "main"})),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", lambda w: w.call("GET", f"{R}/pulls/1")),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", lambda w: w.call("GET", f"{R}/pulls/404")),
    # PATCH /pulls is not in the subset; it answers the same pull-request shape as GET.
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}",
     lambda w: w.call("PATCH", f"{R}/pulls/1", {"state": "closed", "title": "t"})),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments",
     lambda w: w.call("POST", f"{R}/issues/1/comments", {"body": "hi"})),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels",
     lambda w: w.call("POST", f"{R}/issues/1/labels", {"labels": ["a", "b"]})),
    ("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}", lambda w: w.call("GET", f"{R}/actions/jobs/{w.job_id}")),
    ("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel",
     lambda w: w.call("POST", f"{R}/actions/runs/{w.run_id}/cancel")),
    ("GET", "/rate_limit", lambda w: w.call("GET", "/rate_limit")),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", lambda w: w.call("GET", f"{R}/actions/runs/{w.run_id}")),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", _fork_run),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", _rerun_run),
    ("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}", _job_with_steps),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", _comment_on_an_issue),
]


@pytest.mark.parametrize(("method", "template", "make"), CASES,
                         ids=[f"{m} {t} #{i}" for i, (m, t, _) in enumerate(CASES)])
def test_answer_conforms_to_githubs_openapi(openapi: dict[str, Any], world: World, method: str, template: str,
                                            make: Callable[[World], requests.Response]) -> None:
    validate(openapi, method, template, make(world))


def test_a_completed_run_cancel_conflict_conforms(openapi: dict[str, Any], world: World) -> None:
    world.call("POST", f"{R}/actions/runs/{world.run_id}/cancel")
    answer = world.call("POST", f"{R}/actions/runs/{world.run_id}/cancel")
    assert answer.status_code == 409
    validate(openapi, "POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel", answer)


def test_the_validator_catches_a_wrong_shape(openapi: dict[str, Any], world: World) -> None:
    answer = world.call("GET", f"{R}/git/ref/heads/main")
    broken = requests.Response()
    broken.status_code, broken._content = 200, json.dumps({**answer.json(), "object": {"sha": 5}}).encode()
    with pytest.raises(AssertionError, match="object"):
        validate(openapi, "GET", "/repos/{owner}/{repo}/git/ref/{ref}", broken)


def test_nullable_fields_become_null_types() -> None:
    schema = to_json_schema({"type": "string", "nullable": True, "enum": ["a"]})
    assert schema == {"type": ["string", "null"], "enum": ["a", None]}
    assert to_json_schema({"$ref": "#/x", "nullable": True}) == {"anyOf": [{"type": "null"}, {"$ref": ROOT + "#/x"}]}
