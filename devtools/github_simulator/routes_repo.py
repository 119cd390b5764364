"""Repository endpoints (installation token): the repository, git refs, trees, blobs, commits, contents."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from flask import Blueprint, Response, request

from devtools.github_simulator import shapes
from devtools.github_simulator.app import api_url, json_response, require_token, sim
from devtools.github_simulator.errors import ApiError, not_found, validation_failed
from devtools.github_simulator.gitstore import MODE_TREE
from devtools.github_simulator.repos import SimRepo

bp = Blueprint("sim_repo", __name__, url_prefix="/repos/<owner>/<repo>")


def body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "Problems parsing JSON")
    return data


def load(owner: str, repo: str, permission: str | None = None, level: str = "write") -> tuple[SimRepo, dict[str, str]]:
    token = require_token(f"{owner}/{repo}", permission, level)
    return sim().repo(f"{owner}/{repo}"), token.permissions


@bp.get("")
def get_repo(owner: str, repo: str) -> Response:
    r, _ = load(owner, repo)
    return json_response(shapes.repository(sim(), api_url(), r))


@bp.get("/git/ref/<path:ref>")
def get_ref(owner: str, repo: str, ref: str) -> Response:
    r, _ = load(owner, repo)
    r.require_commits()
    if f"refs/{ref}" not in r.refs:
        raise not_found()
    return json_response(shapes.ref(api_url(), r, f"refs/{ref}"))


@bp.post("/git/refs")
def create_ref(owner: str, repo: str) -> Response:
    r, perms = load(owner, repo, "contents")
    data = body()
    ref, sha = data.get("ref"), data.get("sha")
    if not isinstance(ref, str) or not isinstance(sha, str):
        raise validation_failed("Reference", "ref and sha are required", code="missing_field")
    with sim().lock:
        r.create_ref(ref, sha, perms)
        return json_response(shapes.ref(api_url(), r, ref), 201)


@bp.patch("/git/refs/<path:ref>")
def update_ref(owner: str, repo: str, ref: str) -> Response:
    r, perms = load(owner, repo, "contents")
    data = body()
    if not isinstance(data.get("sha"), str):
        raise validation_failed("Reference", "sha is required", code="missing_field", field="sha")
    with sim().lock:
        r.update_ref(f"refs/{ref}", data["sha"], bool(data.get("force", False)), perms)
        return json_response(shapes.ref(api_url(), r, f"refs/{ref}"))


@bp.delete("/git/refs/<path:ref>")
def delete_ref(owner: str, repo: str, ref: str) -> Response:
    r, _ = load(owner, repo, "contents")
    with sim().lock:
        r.delete_ref(f"refs/{ref}")
    return Response(status=204)


@bp.get("/git/trees/<sha>")
def get_tree(owner: str, repo: str, sha: str) -> Response:
    r, _ = load(owner, repo)
    r.require_commits()
    if sha not in r.store.trees:
        sha = r.store.commits[r.resolve(sha)].tree  # GitHub also takes a commit sha or branch name
    recursive = request.args.get("recursive") not in (None, "", "0", "false")
    return json_response(shapes.tree(api_url(), r, sha, recursive=recursive))


@bp.post("/git/blobs")
def create_blob(owner: str, repo: str) -> Response:
    r, _ = load(owner, repo, "contents")
    data = body()
    content = data.get("content")
    if not isinstance(content, str):
        raise validation_failed("Blob", "content is required", code="missing_field", field="content")
    if data.get("encoding", "utf-8") == "base64":
        try:
            raw = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise validation_failed("Blob", "content is not valid Base64", code="invalid", field="content") from None
    else:
        raw = content.encode("utf-8")
    with sim().lock:
        sha = r.store.put_blob(raw)
    return json_response({"sha": sha, "url": f"{api_url()}/repos/{r.full_name}/git/blobs/{sha}"}, 201)


@bp.post("/git/trees")
def create_tree(owner: str, repo: str) -> Response:
    r, _ = load(owner, repo, "contents")
    data = body()
    entries = data.get("tree")
    if not isinstance(entries, list):
        raise validation_failed("Tree", "tree is required", code="missing_field", field="tree")
    with sim().lock:
        base = data.get("base_tree")
        if base is not None and base not in r.store.trees:
            raise ApiError(422, "base_tree is not a valid tree oid")
        files = r.store.flatten(base) if base else {}
        for entry in entries:
            _apply(r, files, entry)
        sha = r.store.tree_from_files(files)
        return json_response(shapes.tree(api_url(), r, sha, recursive=False), 201)


def _apply(r: SimRepo, files: dict[str, tuple[str, str]], entry: Any) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise validation_failed("Tree", "tree entries need a path", code="missing_field", field="path")
    path, mode = entry["path"].strip("/"), str(entry.get("mode", "100644"))
    if "content" in entry:
        files[path] = (mode, r.store.put_blob(str(entry["content"]).encode("utf-8")))
        return
    sha = entry.get("sha")
    if sha is None:
        for existing in [p for p in files if p == path or p.startswith(path + "/")]:
            del files[existing]
        return
    if entry.get("type") == "tree" or mode == MODE_TREE:
        if sha not in r.store.trees:
            raise ApiError(422, f"tree.sha {sha} is not a valid tree")
        files |= {f"{path}/{p}": v for p, v in r.store.flatten(sha).items()}
        return
    if sha not in r.store.blobs:
        raise ApiError(422, f"tree.sha {sha} is not a valid blob")
    files[path] = (mode, sha)


@bp.post("/git/commits")
def create_commit(owner: str, repo: str) -> Response:
    r, _ = load(owner, repo, "contents")
    data = body()
    message, tree, parents = data.get("message"), data.get("tree"), data.get("parents", [])
    if not isinstance(message, str) or not isinstance(tree, str) or not isinstance(parents, list):
        raise validation_failed("Commit", "message and tree are required", code="missing_field")
    simulator = sim()
    with simulator.lock:
        if tree not in r.store.trees:
            raise ApiError(422, "Tree SHA does not exist")
        if any(p not in r.store.commits for p in parents):
            raise ApiError(422, "Parent SHA does not exist or is not a commit object")
        commit = r.store.put_commit(tree, parents, message, name=f"{simulator.app_slug}[bot]",
                                    email="bot@users.noreply.github.com", timestamp=int(simulator.clock()))
        return json_response(shapes.commit(simulator, api_url(), r, commit.sha), 201)


@bp.get("/git/commits/<sha>")
def get_commit(owner: str, repo: str, sha: str) -> Response:
    r, _ = load(owner, repo)
    r.require_commits()
    if sha not in r.store.commits:
        raise not_found()
    return json_response(shapes.commit(sim(), api_url(), r, sha))


@bp.get("/contents/<path:path>")
def get_contents(owner: str, repo: str, path: str) -> Response:
    r, _ = load(owner, repo, "contents", "read")
    ref = request.args.get("ref")
    commit = r.resolve(ref)
    found = r.store.flatten(r.store.commits[commit].tree).get(path.strip("/"))
    if found is None:
        raise not_found()
    ref_name = ref or r.default_branch
    return json_response(shapes.content(sim(), api_url(), r, path.strip("/"), sha=found[1], ref_name=ref_name))

