"""/setup: GitHub's manifest flow against a tiny GitHub stand-in on loopback; the env file gets 0600 and the values."""

from __future__ import annotations

import json
import re
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from app import create_app
from config import Settings
from runnerguard.services import app_setup as app_manifest
from tests.test_dashboard import csrf, login

PERMISSIONS = {"contents": "write", "pull_requests": "write", "workflows": "write", "actions": "write",
               "checks": "read", "issues": "write", "metadata": "read"}
STATE_RE = re.compile(r"\?state=([A-Za-z0-9_%-]+)")


def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def github() -> Iterator[dict[str, Any]]:
    """Answers POST /app-manifests/{code}/conversions as GitHub does: 201 once per code, 404 unknown, 422 used."""
    fake = Flask("github-stand-in")
    seen: dict[str, Any] = {"calls": [], "pem": pem(), "used": set()}

    @fake.post("/api/v3/app-manifests/<code>/conversions")
    def conversions(code: str) -> Any:
        seen["calls"].append({"code": code, "auth": fake_request().headers.get("Authorization")})
        if code == "broken":
            return jsonify(id=1), 201
        if code != "good" and not code.startswith("good-"):
            return jsonify(message="Not Found"), 404
        if code in seen["used"]:
            return jsonify(message="Validation Failed"), 422
        seen["used"].add(code)
        return jsonify(id=4242, slug="runnerguard-test", node_id="A_1", name="runnerguard test",
                       html_url="https://github.com/apps/runnerguard-test", pem=seen["pem"],
                       webhook_secret="whsec-from-github", client_id="Iv1.x", client_secret="cs"), 201

    def fake_request() -> Any:

        return request

    server = make_server("127.0.0.1", 0, fake, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seen["api"] = f"http://127.0.0.1:{server.server_port}/api/v3"
    yield seen
    server.shutdown()
    thread.join(5)


@pytest.fixture()
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "conf" / ".env"
    path.parent.mkdir()
    path.write_text("# local\nGITHUB_WEBHOOK_SECRET=old-local-secret\nADMIN_TOKEN=keep-me\n")
    path.chmod(0o644)
    return path


def setup_client(settings: Settings, github: dict[str, Any], env_file: Path, **overrides: Any) -> Any:
    app = create_app(settings.with_overrides(github_api_url=github["api"], **overrides))
    app.config["RUNNERGUARD_ENV_FILE"] = str(env_file)
    client = app.test_client()
    login(client)
    return client


def start_flow(client: Any) -> str:
    token = csrf(client, "/setup")
    page = client.post("/setup", data={"csrf_token": token, "base_url": "https://abc.tunnel.example",
                                       "name": "runnerguard test"})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'action="http://127.0.0.1:' in html and "/settings/apps/new?state=" in html
    match = STATE_RE.search(html)
    assert match
    return match.group(1)


def test_manifest_has_exactly_the_permissions_and_events() -> None:
    manifest = app_manifest.load_manifest()
    assert manifest["default_permissions"] == PERMISSIONS
    assert sorted(manifest["default_events"]) == ["pull_request", "workflow_job"]
    built = app_manifest.build_manifest("https://abc.tunnel.example/", name="rg")
    assert built["hook_attributes"] == {"url": "https://abc.tunnel.example/webhooks/github", "active": True}
    assert built["redirect_url"] == "https://abc.tunnel.example/setup/callback"
    assert built["public"] is False
    for bad in ("ftp://x", "abc.tunnel.example", "https://x/?q=1", ""):
        with pytest.raises(app_manifest.SetupError):
            app_manifest.build_manifest(bad, name="rg")
    with pytest.raises(app_manifest.SetupError):
        app_manifest.build_manifest("https://x", name="<script>")


def test_github_web_urls() -> None:
    assert app_manifest.new_app_url("https://api.github.com", None) == "https://github.com/settings/apps/new"
    assert (app_manifest.new_app_url("https://ghe.corp/api/v3", "octo-org")
            == "https://ghe.corp/organizations/octo-org/settings/apps/new")
    with pytest.raises(app_manifest.SetupError):
        app_manifest.new_app_url("https://api.github.com", "bad/org")


def test_full_flow_writes_the_env_file_0600(settings, redis_client, github, env_file) -> None:  # type: ignore[no-untyped-def]
    client = setup_client(settings, github, env_file)
    state = start_flow(client)
    page = client.get(f"/setup/callback?code=good&state={state}")
    assert page.status_code == 200, page.get_data(as_text=True)
    assert "id 4242" in page.get_data(as_text=True)
    assert github["calls"][-1] == {"code": "good", "auth": None}  # the code is the credential: no auth header
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    assert values["GITHUB_APP_ID"] == "4242"
    assert values["GITHUB_WEBHOOK_SECRET"] == "whsec-from-github"
    assert values["ADMIN_TOKEN"] == "keep-me" and env_file.read_text().startswith("# local\n")
    key_path = Path(values["GITHUB_PRIVATE_KEY_PATH"])
    assert key_path.read_text().strip() == github["pem"].strip()
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert "client_secret" not in env_file.read_text() and "cs" not in values.values()
    # setup is off at once, in this process and any other on the same Redis, until a restart loads the App
    calls = len(github["calls"])
    off = client.get("/setup")
    assert off.status_code == 404 and "just created" in off.get_json()["error"]
    assert client.get(f"/setup/callback?code=good&state={state}").status_code == 404
    assert len(github["calls"]) == calls
    other = setup_client(settings, github, env_file, allow_setup=True)
    assert other.get("/setup").status_code == 404
    restarted = setup_client(settings, github, env_file, github_app_id="4242")
    assert restarted.get("/setup").status_code == 404  # configured now, and no RUNNERGUARD_ALLOW_SETUP
    assert setup_client(settings, github, env_file, github_app_id="4242", allow_setup=True).get("/setup").status_code == 200


def test_bad_or_expired_code_shows_a_clear_error(settings, redis_client, github, env_file) -> None:  # type: ignore[no-untyped-def]
    client = setup_client(settings, github, env_file)
    before = env_file.read_text()
    github["used"].add("good-used")
    for code, text in (("expired", "expires after an hour"), ("broken", "without the App"),
                       ("bad code!", "malformed"), ("good-used", "already used")):
        state = start_flow(client)
        page = client.get("/setup/callback", query_string={"code": code, "state": state})
        assert page.status_code == 502 and text in page.get_data(as_text=True), code
    assert env_file.read_text() == before


def test_state_must_match(settings, redis_client, github, env_file) -> None:  # type: ignore[no-untyped-def]
    client = setup_client(settings, github, env_file)
    start_flow(client)
    page = client.get("/setup/callback?code=good-2&state=forged")
    assert page.status_code == 400 and "state mismatch" in page.get_data(as_text=True)
    assert "GITHUB_APP_ID" not in env_file.read_text()


def test_setup_needs_login_csrf_and_a_sane_url(settings, redis_client, github, env_file) -> None:  # type: ignore[no-untyped-def]
    app = create_app(settings.with_overrides(github_api_url=github["api"]))
    anonymous = app.test_client()
    assert anonymous.get("/setup").status_code == 302
    assert anonymous.get("/setup/callback?code=good&state=x").status_code == 302
    client = setup_client(settings, github, env_file)
    assert client.post("/setup", data={"base_url": "https://x.example"}).status_code == 400  # no CSRF token
    token = csrf(client, "/setup")
    bad = client.post("/setup", data={"csrf_token": token, "base_url": "not a url"})
    assert bad.status_code == 400 and "public URL" in bad.get_data(as_text=True)


def test_setup_is_off_once_an_app_is_configured(settings, redis_client, github, env_file) -> None:  # type: ignore[no-untyped-def]
    client = setup_client(settings, github, env_file, github_app_id="99")
    response = client.get("/setup")
    assert response.status_code == 404 and "RUNNERGUARD_ALLOW_SETUP" in response.get_json()["error"]

    client = setup_client(settings, github, env_file, github_app_id="99", allow_setup=True)
    assert client.get("/setup").status_code == 200
    json.dumps(app_manifest.load_manifest())
