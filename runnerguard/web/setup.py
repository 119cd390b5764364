"""GET/POST /setup: create the GitHub App from its manifest (GitHub's manifest flow), admin only."""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template, request, session
from werkzeug.wrappers import Response

from runnerguard.services import app_setup as app_manifest
from runnerguard.store import setup_state
from runnerguard.web.session_auth import login_required
from runnerguard.web.state import state

log = logging.getLogger("runnerguard.setup")
bp = Blueprint("setup", __name__, template_folder="templates")
ENV_FILE_CONFIG = "RUNNERGUARD_ENV_FILE"  # app.config key; default: .env beside app.py, as `make run` uses
DEFAULT_ENV_FILE = Path(__file__).resolve().parents[2] / ".env"
DEFAULT_NAME = "runnerguard"

SETUP_DISABLED = ("Setup is off: this runnerguard already has a GitHub App (GITHUB_APP_ID). "
                  "Set RUNNERGUARD_ALLOW_SETUP=1 to create another one.")
SETUP_JUST_DONE = ("Setup is off: a GitHub App was just created here. Restart runnerguard to use it "
                   "(with RUNNERGUARD_ALLOW_SETUP=1 to create another one).")
STATE_MISMATCH = "This callback does not belong to a setup started here (state mismatch). Start the setup again."
DONE = "The GitHub App {slug} (id {app_id}) is created. Its id, private key and webhook secret are stored in {env}."


def setup_enabled() -> bool:
    settings = state().settings
    # `allow_setup` (RUNNERGUARD_ALLOW_SETUP) lets an admin create a new App over a configured one.
    return (not settings.github_app_id or settings.allow_setup) and not _just_created()


def _just_created() -> bool:
    # An App created since this process started (every web process sees it through Redis): this process still
    # runs the old settings, so setup stays off until a restart loads the new App's id.
    created = setup_state.created_app_id(state().redis)
    return created is not None and created != state().settings.github_app_id


def env_file() -> Path:
    return Path(current_app.config.get(ENV_FILE_CONFIG) or DEFAULT_ENV_FILE)


def _guard() -> None:
    if not setup_enabled():
        abort(404, SETUP_JUST_DONE if _just_created() else SETUP_DISABLED)


@bp.get("/setup")
@login_required
def start() -> str:
    _guard()
    return render_template("setup.html", step="start", base_url=request.host_url.rstrip("/"), name=DEFAULT_NAME,
                           env_file=env_file(), error=None)


@bp.post("/setup")
@login_required
def confirm() -> tuple[str, int] | str:
    """Build the manifest for the public URL given; the page then posts it to GitHub from the admin's browser."""
    _guard()
    base_url = request.form.get("base_url", "").strip()
    name = request.form.get("name", "").strip() or DEFAULT_NAME
    owner = request.form.get("owner", "").strip() or None
    try:
        manifest = app_manifest.build_manifest(base_url, name=name)
        action = app_manifest.new_app_url(state().settings.github_api_url, owner)
    except app_manifest.SetupError as exc:
        return render_template("setup.html", step="start", base_url=base_url, name=name, owner=owner or "",
                               env_file=env_file(), error=str(exc)), 400
    session["setup_state"] = secrets.token_urlsafe(24)
    return render_template("setup.html", step="confirm", action=action, state=session["setup_state"],
                           manifest=json.dumps(manifest), manifest_pretty=json.dumps(manifest, indent=2))


@bp.get("/setup/callback")
@login_required
def callback() -> tuple[str, int] | str | Response:
    """GitHub sends the admin's browser back here with a one-time code; convert it and store what it gives."""
    _guard()
    expected = str(session.get("setup_state", ""))
    sent = request.args.get("state", "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        return render_template("setup.html", step="error", error=STATE_MISMATCH), 400
    try:
        created = app_manifest.convert(state().settings.github_api_url, request.args.get("code", ""))
        path = env_file()
        app_manifest.store(created, path)
        setup_state.mark_created(state().redis, str(created.app_id))
    except app_manifest.SetupError as exc:
        log.warning("app setup failed: %s", exc)
        return render_template("setup.html", step="error", error=str(exc)), 502
    except OSError as exc:
        return render_template("setup.html", step="error",
                               error=f"Could not write {env_file()}: {exc.strerror}"), 500
    session.pop("setup_state", None)
    log.info("github app created", extra={"app_id": created.app_id})  # never the key or the secret
    return render_template("setup.html", step="done", message=DONE.format(
        slug=created.slug or created.app_id, app_id=created.app_id, env=path), html_url=created.html_url)
