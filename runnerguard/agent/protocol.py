"""The agent's side of interfaces.md section 2: authenticated JSON calls to /agent/v1 and strict parsing of answers."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

import requests

from runnerguard.agent import AGENT_VERSION
from runnerguard.errors import RunnerguardError
from runnerguard.prewarm.specs import SpecError

log = logging.getLogger("runnerguard.agent")

MAX_WAIT = 30
CONNECT_TIMEOUT = 10.0
READ_MARGIN = 15.0  # past the long poll's own wait: a slow proxy must not look like a dead server
_ITEM_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # it goes into a URL path: nothing that could walk or split it

Kind = Literal["cache", "command"]


class Refused(RunnerguardError):
    """The web tier refused the host token (401) or this host's use of it (403): retrying will not help by itself."""

    def __init__(self, status: int, path: str) -> None:
        super().__init__(f"{path} answered {status}")
        self.status = status


class Unreachable(RunnerguardError):
    """The web tier did not answer usefully (network, 5xx, not JSON): worth retrying with backoff."""


@dataclass(frozen=True)
class WorkItem:
    """One piece of work: which policy cache or command, for which job; never a function name nor a payload."""

    id: str
    kind: Kind
    name: str
    job_id: int
    lease_seconds: int

    @classmethod
    def parse(cls, raw: object) -> WorkItem:
        if not isinstance(raw, dict):
            raise SpecError("items", "each work item must be an object")
        item_id, kind, name = raw.get("id"), raw.get("kind"), raw.get("name")
        job_id, lease = raw.get("job_id"), raw.get("lease_seconds", 600)
        if not isinstance(item_id, str) or not _ITEM_ID.fullmatch(item_id):
            raise SpecError("id", f"must be 1-128 characters of A-Z a-z 0-9 . _ : - (got {item_id!r:.80})")
        if kind not in ("cache", "command"):
            raise SpecError("kind", f"must be 'cache' or 'command' (got {kind!r:.40})")
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise SpecError("job_id", "must be an integer")
        if isinstance(lease, bool) or not isinstance(lease, int) or lease < 1:
            raise SpecError("lease_seconds", "must be a positive integer")
        # looked up by exact key in the host's policy, never used as a path: anything the policy lacks is refused there
        if not isinstance(name, str) or not 0 < len(name) <= 200 or not name.isprintable():
            raise SpecError("name", "must be a short printable string")
        return cls(item_id, kind, name, job_id, lease)


class AgentClient:
    """One host's calls to the web tier; the token goes in a header of every call and nowhere else (no logs)."""

    def __init__(self, base_url: str, host: str, token: str, *, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = host
        self._session = session or requests.Session()
        self.retry_after: float | None = None  # what the last empty long poll asked for (a busy web tier)
        self._session.headers.update({
            "Authorization": f"Bearer {token}",
            "X-Runnerguard-Host": host,
            "Accept": "application/json",
            "User-Agent": f"runnerguard-agent/{AGENT_VERSION}",
        })

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, *, body: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
              read_timeout: float = 30.0) -> requests.Response:
        try:
            # no redirects: a 3xx to elsewhere must not carry the host token along
            resp = self._session.request(method, self.base_url + path, json=body, params=params,
                                         timeout=(CONNECT_TIMEOUT, read_timeout), allow_redirects=False)
        except requests.RequestException as exc:
            raise Unreachable(f"{method} {path}: {exc.__class__.__name__}") from None
        if resp.status_code in (401, 403):
            raise Refused(resp.status_code, path)
        if resp.status_code >= 300 and resp.status_code != 404:
            raise Unreachable(f"{method} {path} answered {resp.status_code}")
        return resp

    @staticmethod
    def _json(resp: requests.Response, path: str) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError:
            raise Unreachable(f"{path} answered {resp.status_code} without JSON") from None
        if not isinstance(data, dict):
            raise Unreachable(f"{path} answered JSON that is not an object")
        return data

    def config(self) -> dict[str, Any]:
        resp = self._call("GET", "/agent/v1/config")
        if resp.status_code == 404:
            raise Unreachable("/agent/v1/config answered 404 (is the web tier recent enough?)")
        return self._json(resp, "/agent/v1/config")

    def work(self, wait: int = 25) -> list[WorkItem]:
        """Long poll: items as soon as there are any, or [] after `wait` seconds (204)."""
        wait = max(0, min(int(wait), MAX_WAIT))
        resp = self._call("GET", "/agent/v1/work", params={"wait": wait}, read_timeout=wait + READ_MARGIN)
        if resp.status_code == 204:
            # a web tier whose long-poll slots are all taken answers 204 at once with Retry-After: honour it
            raw = resp.headers.get("Retry-After", "")
            self.retry_after = min(float(raw), 60.0) if raw.isdigit() else None
            return []
        self.retry_after = None
        if resp.status_code == 404:
            raise Unreachable("/agent/v1/work answered 404")
        items = self._json(resp, "/agent/v1/work").get("items")
        if not isinstance(items, list):
            raise Unreachable("/agent/v1/work answered without an items list")
        parsed: list[WorkItem] = []
        for raw in items:
            try:
                parsed.append(WorkItem.parse(raw))
            except SpecError as exc:
                # one malformed item must not stall the others; its lease runs out on the server
                log.warning("agent: ignored a malformed work item (%s)", exc)
        return parsed

    def done(self, item_id: str, result: dict[str, Any]) -> bool:
        """Acknowledge one item; False when the server no longer knows it (404: its lease ran out and it went)."""
        if not _ITEM_ID.fullmatch(item_id):
            raise SpecError("id", "not a work item id")
        resp = self._call("POST", f"/agent/v1/work/{item_id}/done", body=result)
        return resp.status_code != 404

    def report(self, body: dict[str, Any]) -> None:
        resp = self._call("POST", "/agent/v1/report", body=body)
        if resp.status_code == 404:
            raise Unreachable("/agent/v1/report answered 404")
