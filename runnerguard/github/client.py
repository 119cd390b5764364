"""The GitHub App client: App-level calls with the JWT, repository calls with installation tokens."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import redis as redis_lib
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from runnerguard.github import models as m
from runnerguard.github.actions import ActionsCalls
from runnerguard.github.auth import JWT_LIFETIME, mint_app_jwt
from runnerguard.github.errors import MalformedResponse
from runnerguard.github.issues import IssueCalls
from runnerguard.github.paths import repo as _repo
from runnerguard.github.paths import segment as _q
from runnerguard.github.tokens import TokenCache, WriteGate
from runnerguard.github.transport import RetryPolicy, Transport
from runnerguard.store import github_state

APP_GATE = 0  # App-level writes (redeliveries) share one gate, as if installation 0
REPO_INSTALLATION_TTL = 3600


class GitHubApp:
    """The App: mints JWTs, lists installations and hook deliveries, hands out `InstallationClient`s."""

    def __init__(
        self,
        *,
        api_url: str,
        app_id: int,
        private_key: RSAPrivateKey,
        redis: redis_lib.Redis,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float | tuple[float, float] = (5.0, 30.0),
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.app_id = app_id
        self._key = private_key
        self.redis = redis
        self.clock = clock
        self.transport = Transport(api_url=api_url, clock=clock, sleep=sleep, timeout=timeout, retry=retry,
                                   session=session)
        self.tokens = TokenCache(clock=clock)
        self.gate = WriteGate(redis=redis, clock=clock, sleep=sleep)
        self._jwt: tuple[str, float] | None = None

    def __repr__(self) -> str:
        return f"GitHubApp(app_id={self.app_id}, api_url={self.transport.api_url!r})"

    # --- App authentication ---------------------------------------------------------------------------------------

    def app_jwt(self, *, fresh: bool = False) -> str:
        """A JWT for App-level calls, re-used until a minute before it expires."""
        now = self.clock()
        if fresh or self._jwt is None or self._jwt[1] - 60 <= now:
            self._jwt = (mint_app_jwt(self.app_id, self._key, now), now + JWT_LIFETIME)
        return self._jwt[0]

    def _app_auth(self, refresh: bool) -> str:
        return f"Bearer {self.app_jwt(fresh=refresh)}"

    def _app(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.transport.json(method, path, auth=self._app_auth, **kwargs)

    def create_installation_token(self, installation_id: int) -> m.InstallationToken:
        path = f"/app/installations/{int(installation_id)}/access_tokens"
        return m.InstallationToken.from_json(self._app("POST", path))

    def installation_token(self, installation_id: int, *, refresh: bool = False) -> str:
        """The installation's token from the shared Redis cache, minted when missing or within 5 min of expiry."""
        return self.tokens.get(installation_id, lambda: self.create_installation_token(installation_id),
                               refresh=refresh)

    # --- App-level calls ------------------------------------------------------------------------------------------

    def get_app(self) -> m.App:
        return m.App.from_json(self._app("GET", "/app"))

    def list_installations(self, *, per_page: int = 100) -> list[m.Installation]:
        items = self.transport.paginate("/app/installations", auth=self._app_auth, params={"per_page": per_page})
        return [m.Installation.from_json(item) for item in items]

    def get_repo_installation(self, full_name: str) -> m.Installation:
        installation = m.Installation.from_json(self._app("GET", f"/repos/{_repo(full_name)}/installation"))
        github_state.remember_installation(self.redis, full_name, installation.id, ttl=REPO_INSTALLATION_TTL)
        return installation

    def installation_id_for(self, full_name: str) -> int:
        cached = github_state.cached_installation(self.redis, _repo(full_name))
        if cached is not None:
            return cached
        return self.get_repo_installation(full_name).id

    def installation(self, installation_id: int) -> InstallationClient:
        return InstallationClient(self, installation_id)

    def for_repo(self, full_name: str) -> InstallationClient:
        return self.installation(self.installation_id_for(full_name))

    def iter_hook_deliveries(self, *, per_page: int = 100, status: str | None = None) -> Iterator[m.HookDelivery]:
        """The App's webhook deliveries, newest first, across every cursor page."""
        params: dict[str, Any] = {"per_page": per_page}
        if status:
            params["status"] = status
        for item in self.transport.paginate("/app/hook/deliveries", auth=self._app_auth, params=params):
            yield m.HookDelivery.from_json(item)

    def list_hook_deliveries(self, *, per_page: int = 100, status: str | None = None) -> list[m.HookDelivery]:
        return list(self.iter_hook_deliveries(per_page=per_page, status=status))

    def get_hook_delivery(self, delivery_id: int) -> m.HookDeliveryDetail:
        return m.HookDeliveryDetail.from_json(self._app("GET", f"/app/hook/deliveries/{int(delivery_id)}"))

    def redeliver(self, delivery_id: int) -> None:
        self.transport.request("POST", f"/app/hook/deliveries/{int(delivery_id)}/attempts", auth=self._app_auth,
                               gate=lambda: self.gate.hold(APP_GATE))

    def rate_limit(self) -> m.RateLimit:
        return m.RateLimit.from_json(self._app("GET", "/rate_limit"))


class InstallationClient(ActionsCalls, IssueCalls):
    """Repository calls made as one installation; writes go through the installation's write gate."""

    def __init__(self, app: GitHubApp, installation_id: int) -> None:
        self.app = app
        self.installation_id = int(installation_id)

    def __repr__(self) -> str:
        return f"InstallationClient(installation_id={self.installation_id}, app={self.app!r})"

    def _auth(self, refresh: bool) -> str:
        return f"Bearer {self.app.installation_token(self.installation_id, refresh=refresh)}"

    def _gate(self) -> AbstractContextManager[None]:
        return self.app.gate.hold(self.installation_id)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        gate = self._gate if method in ("POST", "PATCH", "PUT", "DELETE") else None
        return self.app.transport.json(method, path, auth=self._auth, gate=gate, **kwargs)

    def _paginate(self, path: str, params: dict[str, Any]) -> Iterator[Any]:
        return self.app.transport.paginate(path, auth=self._auth, params=params)

    # --- repository and git data ----------------------------------------------------------------------------------

    def get_repo(self, repo: str) -> m.Repo:
        return m.Repo.from_json(self._call("GET", f"/repos/{_repo(repo)}"))

    def get_ref(self, repo: str, ref: str) -> m.Ref:
        """`ref` as "heads/main" (GitHub's form for this call)."""
        return m.Ref.from_json(self._call("GET", f"/repos/{_repo(repo)}/git/ref/{_q(_short(ref))}"))

    def get_branch_sha(self, repo: str, branch: str) -> str:
        return self.get_ref(repo, f"heads/{branch}").sha

    def create_ref(self, repo: str, ref: str, sha: str) -> m.Ref:
        """`ref` as "refs/heads/name"; Unprocessable(already_exists) when it exists."""
        full = ref if ref.startswith("refs/") else f"refs/{ref}"
        return m.Ref.from_json(self._call("POST", f"/repos/{_repo(repo)}/git/refs", json={"ref": full, "sha": sha}))

    def update_ref(self, repo: str, ref: str, sha: str, *, force: bool = False) -> m.Ref:
        path = f"/repos/{_repo(repo)}/git/refs/{_q(_short(ref))}"
        return m.Ref.from_json(self._call("PATCH", path, json={"sha": sha, "force": force}))

    def delete_ref(self, repo: str, ref: str) -> None:
        self._call("DELETE", f"/repos/{_repo(repo)}/git/refs/{_q(_short(ref))}")

    def get_tree(self, repo: str, sha: str, *, recursive: bool = True) -> m.Tree:
        params = {"recursive": "1"} if recursive else None
        return m.Tree.from_json(self._call("GET", f"/repos/{_repo(repo)}/git/trees/{_q(sha)}", params=params))

    def get_contents(self, repo: str, path: str, *, ref: str | None = None) -> m.Content:
        params = {"ref": ref} if ref else None
        return m.Content.from_json(self._call("GET", f"/repos/{_repo(repo)}/contents/{_q(path)}", params=params))

    def get_commit(self, repo: str, sha: str) -> m.Commit:
        return m.Commit.from_json(self._call("GET", f"/repos/{_repo(repo)}/git/commits/{_q(sha)}"))

    def create_blob(self, repo: str, content: bytes | str) -> str:
        data = content.encode("utf-8") if isinstance(content, str) else content
        body = {"content": base64.b64encode(data).decode("ascii"), "encoding": "base64"}
        return _sha(self._call("POST", f"/repos/{_repo(repo)}/git/blobs", json=body), "blob")

    def create_tree(self, repo: str, entries: Sequence[Mapping[str, Any]], *, base_tree: str | None = None) -> str:
        """New tree sha. Entries as GitHub takes them: {path, mode, type, sha | content}; sha None deletes."""
        body: dict[str, Any] = {"tree": [dict(e) for e in entries]}
        if base_tree:
            body["base_tree"] = base_tree
        return _sha(self._call("POST", f"/repos/{_repo(repo)}/git/trees", json=body), "tree")

    def create_commit(self, repo: str, *, message: str, tree: str, parents: Sequence[str]) -> m.Commit:
        body = {"message": message, "tree": tree, "parents": list(parents)}
        return m.Commit.from_json(self._call("POST", f"/repos/{_repo(repo)}/git/commits", json=body))

    def commit_files(self, repo: str, *, branch: str, files: Mapping[str, str | bytes | None], message: str,
                     parent: str | None = None) -> m.Commit:
        """Commit changed files (None deletes) on top of `parent` (default: the branch head) and move the branch."""
        head = parent or self.get_branch_sha(repo, branch)
        base_tree = self.get_commit(repo, head).tree_sha
        entries: list[dict[str, Any]] = []
        for path, content in files.items():
            sha = None if content is None else self.create_blob(repo, content)
            entries.append({"path": path, "mode": "100644", "type": "blob", "sha": sha})
        commit = self.create_commit(repo, message=message, tree=self.create_tree(repo, entries, base_tree=base_tree),
                                    parents=[head])
        self.update_ref(repo, f"heads/{branch}", commit.sha)
        return commit

    # --- pulls, issues ------------------------------------------------------------------------------------------------

    def list_pulls(self, repo: str, *, state: str = "open", head: str | None = None, base: str | None = None,
                   per_page: int = 100) -> list[m.PullRequest]:
        """`head` as "owner:branch", GitHub's filter form."""
        params: dict[str, Any] = {"state": state, "per_page": per_page}
        params |= {k: v for k, v in (("head", head), ("base", base)) if v}
        return [m.PullRequest.from_json(p) for p in self._paginate(f"/repos/{_repo(repo)}/pulls", params)]

    def create_pull(self, repo: str, *, title: str, head: str, base: str, body: str = "", draft: bool = False
                    ) -> m.PullRequest:
        payload = {"title": title, "head": head, "base": base, "body": body, "draft": draft}
        return m.PullRequest.from_json(self._call("POST", f"/repos/{_repo(repo)}/pulls", json=payload))

    def get_pull(self, repo: str, number: int) -> m.PullRequest:
        return m.PullRequest.from_json(self._call("GET", f"/repos/{_repo(repo)}/pulls/{int(number)}"))

    def update_pull(self, repo: str, number: int, *, title: str | None = None, body: str | None = None,
                    state: str | None = None) -> m.PullRequest:
        payload = {k: v for k, v in (("title", title), ("body", body), ("state", state)) if v is not None}
        return m.PullRequest.from_json(self._call("PATCH", f"/repos/{_repo(repo)}/pulls/{int(number)}", json=payload))

    def create_issue_comment(self, repo: str, number: int, body: str) -> m.IssueComment:
        path = f"/repos/{_repo(repo)}/issues/{int(number)}/comments"
        return m.IssueComment.from_json(self._call("POST", path, json={"body": body}))

    def add_labels(self, repo: str, number: int, labels: Sequence[str]) -> list[str]:
        """The issue's labels after adding (GitHub creates labels that do not exist yet)."""
        answer = self._call("POST", f"/repos/{_repo(repo)}/issues/{int(number)}/labels", json={"labels": list(labels)})
        if not isinstance(answer, list) or not all(isinstance(x, dict) and isinstance(x.get("name"), str)
                                                   for x in answer):
            raise MalformedResponse("GitHub's label list is not a list of labels")
        return [x["name"] for x in answer]

    # --- actions --------------------------------------------------------------------------------------------------

    def get_job(self, repo: str, job_id: int) -> m.Job:
        return m.Job.from_json(self._call("GET", f"/repos/{_repo(repo)}/actions/jobs/{int(job_id)}"))

    def cancel_run(self, repo: str, run_id: int) -> None:
        """Conflict when the run already completed."""
        self._call("POST", f"/repos/{_repo(repo)}/actions/runs/{int(run_id)}/cancel")


def _short(ref: str) -> str:
    return ref.removeprefix("refs/")


def _sha(data: Any, what: str) -> str:
    sha = data.get("sha") if isinstance(data, dict) else None
    if not isinstance(sha, str):
        raise MalformedResponse(f"GitHub's new {what} has no valid `sha`")
    return sha

