"""The simulator's in-memory GitHub: App, installations, tokens, repositories, injected failures."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from devtools.github_simulator.actions import ActionCall, ActionsControl
from devtools.github_simulator.errors import not_found
from devtools.github_simulator.issues import IssuesControl
from devtools.github_simulator.repos import Pull, Run, SimJob, SimRepo, next_id
from devtools.github_simulator.webhooks import Deliveries

DEFAULT_PERMISSIONS = {
    "metadata": "read",
    "checks": "read",
    "contents": "write",
    "pull_requests": "write",
    "issues": "write",
    "actions": "write",
    "workflows": "write",
}
RATE_LIMIT = 5000


@dataclass
class SimInstallation:
    id: int
    account: str
    account_id: int
    account_type: str
    repos: set[str]  # lower-case full names
    permissions: dict[str, str]
    created_at: float
    suspended: bool = False


@dataclass
class SimToken:
    installation_id: int
    expires_at: float
    permissions: dict[str, str]


@dataclass
class Failure:
    """One queued misbehaviour: an HTTP status, 'timeout', 'secondary', 'primary', or a canned answer."""

    kind: int | str
    match: str | None = None  # only requests whose path contains this
    retry_after: float | None = 1.0
    reset_in: float = 30.0
    delay: float = 0.0
    body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # without Authorization
    auth: str | None  # "jwt" | "token" | None
    installation_id: int | None
    at: float  # by the simulator's clock
    status: int = 0
    started: float = 0.0  # time.monotonic(), to see whether two requests overlapped
    finished: float = 0.0


class Simulator(ActionsControl, IssuesControl):
    """All state plus the Python control API; the Flask app and `/_sim` routes call into this."""

    def __init__(
        self,
        *,
        app_id: int,
        public_key: RSAPublicKey,
        clock: Callable[[], float] = time.time,
        token_lifetime: float = 3600.0,
        app_slug: str = "runnerguard",
        web_url: str = "https://github.com",
        timeout_delay: float = 1.0,
    ) -> None:
        self.app_id = app_id
        self.public_key = public_key
        self.clock = clock
        self.token_lifetime = token_lifetime
        self.app_slug = app_slug
        self.web_url = web_url.rstrip("/")
        self.timeout_delay = timeout_delay
        self.lock = threading.RLock()
        self.repos: dict[str, SimRepo] = {}
        self.installations: dict[int, SimInstallation] = {}
        self.tokens: dict[str, SimToken] = {}  # sha256(token) -> token; the token itself is never kept
        self.failures: deque[Failure] = deque()
        self.requests: list[RecordedRequest] = []
        self.action_calls: list[ActionCall] = []
        self.rate_used: dict[str, int] = {}
        self.exhausted_until: dict[str, float] = {}
        self.window_reset = clock() + 3600
        self.deliveries = Deliveries(app_id=app_id, clock=clock)
        self.created_at = clock()

    # --- setting up --------------------------------------------------------------------------------------------

    def add_repo(self, full_name: str, files: Mapping[str, str | bytes] | None = None, *, default_branch: str = "main",
                 private: bool = False) -> SimRepo:
        """A repository with one commit of `files` on `default_branch` (no commit when files is empty)."""
        owner, name = full_name.split("/")
        with self.lock:
            repo = SimRepo(owner, name, default_branch, self.clock(), private)
            if files:
                repo.commit_files({p: _bytes(d) for p, d in files.items()}, "Initial commit", branch=default_branch,
                                  now=self.clock())
            self.repos[full_name.lower()] = repo
            return repo

    def install(self, repos: Iterable[str], *, account: str | None = None, installation_id: int | None = None,
                permissions: Mapping[str, str] | None = None, account_type: str = "Organization") -> int:
        """Install the App on `repos` (all owned by `account`); returns the installation id."""
        names = {r.lower() for r in repos}
        for name in names:
            self.repo(name)
        with self.lock:
            iid = installation_id or next_id()
            owner = account or (sorted(names)[0].split("/")[0] if names else "octo-org")
            self.installations[iid] = SimInstallation(
                iid, owner, next_id(), account_type, names, dict(permissions or DEFAULT_PERMISSIONS), self.clock()
            )
            return iid

    def set_permission(self, installation_id: int, name: str, level: str | None) -> None:
        """Grant (`level` "read"/"write") or withdraw (None) one permission; tokens minted later follow."""
        with self.lock:
            perms = self.installation(installation_id).permissions
            if level is None:
                perms.pop(name, None)
            else:
                perms[name] = level
            for token in self.tokens.values():
                if token.installation_id == installation_id:
                    token.permissions = dict(perms)

    # --- failures ------------------------------------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int | str = 502, *, match: str | None = None, retry_after: float = 1.0,
                  reset_in: float = 30.0) -> None:
        """The next n API requests fail: an HTTP status, 'timeout', 'secondary' (403 + retry-after),
        'secondary-no-retry-after', 'primary' (403 with x-ratelimit-remaining 0 until now + reset_in), or 'lost'
        (done for real, but answered only after `timeout_delay`, so a client with a shorter timeout never sees it)."""
        with self.lock:
            for _ in range(n):
                self.failures.append(Failure(status, match, retry_after, reset_in))

    def slow_next(self, n: int = 1, seconds: float = 0.5, *, match: str | None = None) -> None:
        """The next n API requests are answered normally, after `seconds`."""
        with self.lock:
            for _ in range(n):
                self.failures.append(Failure("slow", match, delay=seconds))

    def respond_next(self, status: int, body: Any = None, *, raw: bytes | None = None, match: str | None = None,
                     headers: Mapping[str, str] | None = None) -> None:
        """The next request (matching `match`) gets this canned answer: a JSON `body`, or `raw` bytes."""
        with self.lock:
            self.failures.append(Failure(status, match, body=body, raw=raw, headers=dict(headers or {})))

    def take_failure(self, path: str) -> Failure | None:
        with self.lock:
            for failure in self.failures:
                if failure.match is None or failure.match in path:
                    self.failures.remove(failure)
                    return failure
        return None

    # --- tokens --------------------------------------------------------------------------------------------------

    def mint_token(self, installation_id: int) -> tuple[str, SimToken]:
        with self.lock:
            installation = self.installation(installation_id)
            token = "ghs_" + secrets.token_urlsafe(27)[:36]
            record = SimToken(installation_id, self.clock() + self.token_lifetime, dict(installation.permissions))
            self.tokens[_digest(token)] = record
            return token, record

    def check_token(self, token: str) -> SimToken | None:
        # A lookup by digest: the comparison never runs over the secret itself, so timing tells nothing.
        record = self.tokens.get(_digest(token))
        if record is None or record.expires_at <= self.clock():
            return None
        return record

    def expire_tokens(self) -> None:
        """Every issued installation token is expired from now on."""
        with self.lock:
            for record in self.tokens.values():
                record.expires_at = self.clock()

    # --- lookups -------------------------------------------------------------------------------------------------

    def repo(self, full_name: str) -> SimRepo:
        repo = self.repos.get(full_name.lower())
        if repo is None:
            raise not_found()
        return repo

    def installation(self, installation_id: int) -> SimInstallation:
        installation = self.installations.get(installation_id)
        if installation is None:
            raise not_found()
        return installation

    def installation_for(self, full_name: str) -> SimInstallation:
        for installation in self.installations.values():
            if full_name.lower() in installation.repos:
                return installation
        raise not_found()

    # --- inspecting ------------------------------------------------------------------------------------------------

    def files(self, full_name: str, branch: str | None = None) -> dict[str, bytes]:
        repo = self.repo(full_name)
        return repo.store.files_at(repo.branch_sha(branch or repo.default_branch))

    def file_text(self, full_name: str, path: str, branch: str | None = None) -> str:
        return self.files(full_name, branch)[path].decode("utf-8")

    def branches(self, full_name: str) -> dict[str, str]:
        refs = self.repo(full_name).refs
        return {ref.removeprefix("refs/heads/"): sha for ref, sha in refs.items() if ref.startswith("refs/heads/")}

    def pulls(self, full_name: str) -> list[Pull]:
        return sorted(self.repo(full_name).pulls.values(), key=lambda p: p.number)

    def comments(self, full_name: str, number: int) -> list[str]:
        return [c["body"] for c in self.repo(full_name).comments.get(number, [])]

    def labels(self, full_name: str, number: int) -> list[str]:
        return list(self.repo(full_name).labels.get(number, []))

    def merge_pull(self, full_name: str, number: int) -> str:
        with self.lock:
            return self.repo(full_name).merge_pull(number, now=self.clock())

    def push(self, full_name: str, files: Mapping[str, str | bytes | None], *, branch: str | None = None,
             message: str = "Change") -> str:
        """A commit pushed by someone else (None deletes a file); returns its sha."""
        with self.lock:
            repo = self.repo(full_name)
            data = {p: None if d is None else _bytes(d) for p, d in files.items()}
            return repo.commit_files(data, message, branch=branch or repo.default_branch, now=self.clock())

    # --- actions -------------------------------------------------------------------------------------------------

    def add_job(self, full_name: str, *, name: str = "build", labels: Iterable[str] = ("self-hosted",),
                status: str = "queued", conclusion: str | None = None, run_id: int | None = None,
                workflow_name: str = "CI", runner_name: str | None = None,
                steps: Iterable[Mapping[str, Any]] = (), started_at: float | None = None,
                completed_at: float | None = None) -> SimJob:
        """A workflow job (and its run, when `run_id` is new) on the default branch's head (an existing run's head)."""
        with self.lock:
            repo = self.repo(full_name)
            run = repo.runs.get(run_id or 0)
            if run is None:
                head = repo.branch_sha(repo.default_branch)
                run = Run(run_id or next_id(), workflow_name, head, repo.default_branch, created_at=self.clock(),
                          updated_at=self.clock(), run_number=len(repo.runs) + 1)
                repo.runs[run.id] = run
            now = self.clock()
            job = SimJob(next_id(), run.id, name, list(labels), run.head_sha, run.head_branch, run.name, now,
                         status=status, conclusion=conclusion, runner_name=runner_name,
                         started_at=started_at if started_at is not None
                         else now if status in ("in_progress", "completed") else None,
                         completed_at=completed_at if completed_at is not None
                         else now if status == "completed" else None,
                         run_attempt=run.run_attempt, steps=[dict(s) for s in steps])
            repo.jobs[job.id] = job
            run.jobs.append(job.id)
            return job

    def finish_run(self, full_name: str, run_id: int, conclusion: str = "success") -> None:
        with self.lock:
            run = self.repo(full_name).runs[run_id]
            run.status, run.conclusion, run.updated_at = "completed", conclusion, self.clock()

    # --- rate limits ---------------------------------------------------------------------------------------------

    def rate(self, principal: str) -> tuple[int, int]:
        """(remaining, reset) of a principal ("app" or an installation id), rolling the hourly window."""
        now = self.clock()
        with self.lock:
            if now >= self.window_reset:
                self.window_reset = now + 3600
                self.rate_used.clear()
            if self.exhausted_until.get(principal, 0) > now:
                return 0, int(self.exhausted_until[principal])
            return max(RATE_LIMIT - self.rate_used.get(principal, 0), 0), int(self.window_reset)

    def count(self, principal: str) -> None:
        with self.lock:
            self.rate_used[principal] = self.rate_used.get(principal, 0) + 1


def _bytes(data: str | bytes) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
