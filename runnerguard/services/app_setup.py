"""The GitHub App manifest flow behind /setup: build the manifest, convert the code GitHub sends back, store the App.

The conversion is the one GitHub call made outside runnerguard/github/, and the web tier's only one: it needs no
authentication (the one-time code is the credential) and runs once, while an admin sets the App up, so it does not
need the client's JWTs, retries or rate-limit handling.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from runnerguard.errors import InvalidInput

MANIFEST_PATH = Path(__file__).resolve().parents[2] / "deploy" / "github-app-manifest.json"
CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,33}$")
OWNER_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
TIMEOUT = 15
KEY_FILE = "github-app.private-key.pem"
ENV_LINE_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")

CODE_UNKNOWN = ("GitHub does not know this code: a manifest code works once and expires after an hour. "
                "Start the setup again.")
CODE_REFUSED = "GitHub refused the code (HTTP {status}): it was already used, or it expired. Start the setup again."
UNREACHABLE = "Could not reach the GitHub API at {url}: {error}"
BAD_ANSWER = "GitHub answered HTTP {status} without the App's id, private key and webhook secret."
BAD_CODE = "The code in the callback is malformed."


class SetupError(InvalidInput):
    """The manifest flow could not finish; the message is meant for the admin's eyes."""


@dataclass(frozen=True)
class CreatedApp:
    app_id: int
    slug: str
    html_url: str
    pem: str = field(repr=False)
    webhook_secret: str = field(repr=False)


def load_manifest(path: Path = MANIFEST_PATH) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def build_manifest(base_url: str, *, name: str, template: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The manifest with this instance's URLs; base_url is what GitHub can reach (a tunnel on a laptop)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise SetupError(f"the public URL must be http(s)://host[:port][/path], got {base_url[:100]!r}")
    if not NAME_RE.fullmatch(name):
        raise SetupError("the App name must be 1-34 letters, digits, spaces, '.', '_' or '-'")
    base = base_url.rstrip("/")
    manifest = dict(template if template is not None else load_manifest())
    manifest.update(name=name, url=base, redirect_url=f"{base}/setup/callback",
                    hook_attributes={**manifest.get("hook_attributes", {}), "url": f"{base}/webhooks/github"})
    return manifest


def github_web_url(api_url: str) -> str:
    """https://api.github.com -> https://github.com; GitHub Enterprise https://HOST/api/v3 -> https://HOST."""
    parts = urlsplit(api_url)
    if parts.netloc == "api.github.com":
        return "https://github.com"
    path = parts.path.rstrip("/")
    path = path[: -len("/api/v3")] if path.endswith("/api/v3") else path
    return f"{parts.scheme}://{parts.netloc}{path}"


def new_app_url(api_url: str, owner: str | None) -> str:
    web = github_web_url(api_url)
    if owner:
        if not OWNER_RE.fullmatch(owner):
            raise SetupError("the organization must be a GitHub login (letters, digits and '-')")
        return f"{web}/organizations/{owner}/settings/apps/new"
    return f"{web}/settings/apps/new"


def convert(api_url: str, code: str, *, session: requests.Session | None = None) -> CreatedApp:
    """POST /app-manifests/{code}/conversions: the App's id, private key and webhook secret, once."""
    if not CODE_RE.fullmatch(code):
        raise SetupError(BAD_CODE)
    url = f"{api_url.rstrip('/')}/app-manifests/{code}/conversions"
    http = session or requests.Session()
    try:
        response = http.post(url, headers={"Accept": "application/vnd.github+json",
                                           "X-GitHub-Api-Version": "2022-11-28"}, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise SetupError(UNREACHABLE.format(url=api_url, error=type(exc).__name__)) from None
    if response.status_code == 404:
        raise SetupError(CODE_UNKNOWN)
    if response.status_code in (401, 403, 410, 422):
        raise SetupError(CODE_REFUSED.format(status=response.status_code))
    try:
        data = response.json()
        created = CreatedApp(app_id=int(data["id"]), slug=str(data.get("slug", "")),
                             html_url=str(data.get("html_url", "")), pem=str(data["pem"]),
                             webhook_secret=str(data["webhook_secret"]))
    except (ValueError, KeyError, TypeError):
        raise SetupError(BAD_ANSWER.format(status=response.status_code)) from None
    if response.status_code >= 300 or "PRIVATE KEY" not in created.pem or not created.webhook_secret:
        raise SetupError(BAD_ANSWER.format(status=response.status_code))
    return created


def _write_private(path: Path, text: str) -> None:
    """Write owner-only (0600) from the first byte, atomically: no moment where another user could read it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def update_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Set keys in a KEY=value env file, keeping every other line as it was; the file ends up mode 0600."""
    lines = path.read_text().splitlines() if path.exists() else []
    pending = dict(values)
    out = []
    for line in lines:
        match = ENV_LINE_RE.match(line)
        if match and match.group(1) in pending:
            key = match.group(1)
            out.append(f"{key}={pending.pop(key)}")
        else:
            out.append(line)
    out += [f"{k}={v}" for k, v in pending.items()]
    _write_private(path, "\n".join(out) + "\n")


def store(created: CreatedApp, env_file: Path) -> Path:
    """Private key beside the env file (0600), and the App id, key path and webhook secret in it (0600)."""
    env_file.parent.mkdir(parents=True, exist_ok=True)
    key_path = env_file.parent / KEY_FILE
    _write_private(key_path, created.pem if created.pem.endswith("\n") else created.pem + "\n")
    update_env_file(env_file, {
        "GITHUB_APP_ID": str(created.app_id),
        "GITHUB_PRIVATE_KEY_PATH": str(key_path),
        "GITHUB_WEBHOOK_SECRET": created.webhook_secret,
    })
    return key_path
