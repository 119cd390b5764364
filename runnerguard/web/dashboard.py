"""The dashboard (`/`, session login), its replay form, its icon, and the scorecard as JSON (`/api/scorecard`)."""

from __future__ import annotations

import time

from flask import Blueprint, Response, flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from runnerguard.domain.links import web_bases
from runnerguard.errors import NotFound
from runnerguard.services import replay
from runnerguard.services import reports as report_data
from runnerguard.web import dashboard_data, notify_view
from runnerguard.web.auth import require_admin
from runnerguard.web.hosts_view import host_views
from runnerguard.web.session_auth import login_required
from runnerguard.web.state import state

bp = Blueprint("dashboard", __name__, template_folder="templates")
GUID_MAX = 64
REPLAYED = "Replaying delivery {guid}: {tasks}."
REPLAY_UNKNOWN = "No delivery {guid} is recorded (it may have expired)."
# A shield on a dark square: the browser's tab icon, served so /favicon.ico is never a 404.
FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" '
           'fill="#111827"/><path d="M16 5l9 3.5v6.5c0 6-4 10-9 12-5-2-9-6-9-12V8.5z" fill="#16a34a"/>'
           '<path d="M11.5 16.5l3 3 6-6.5" stroke="#fff" stroke-width="2.5" fill="none"/></svg>')


@bp.get("/")
@login_required
def index() -> str:
    web = state()
    now = time.time()
    bases = web_bases(web.settings.github_web_url)
    return render_template(
        "dashboard.html",
        now=now,
        hosts=host_views(web.redis, web.policy, now=now),
        generated=time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(now)),
        statuses=dashboard_data.statuses(web.redis, web.policy, now=now,
                                         app_configured=bool(web.settings.github_app_id), web_bases=bases),
        pools=dashboard_data.pool_views(web.redis, web.policy, now=now),
        caches=dashboard_data.cache_rows(web.redis),
        rollbacks=dashboard_data.rollbacks(web.redis, bases),
        jobs=dashboard_data.latest_jobs(web.redis, bases),
        deliveries=dashboard_data.recent_deliveries(web.redis),
        failed=dashboard_data.failed_tasks(web.redis, web.settings.queues),
        notifiers=notify_view.rows(web.redis, web.policy),
    )


@bp.get("/favicon.ico")
def favicon() -> Response:
    return Response(FAVICON, mimetype="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})


@bp.post("/dashboard/deliveries/<guid>/replay")
@login_required
def replay_delivery(guid: str) -> BaseResponse:
    """The form twin of POST /api/deliveries/<guid>/replay: session + CSRF token instead of a Bearer token."""
    web = state()
    try:
        if len(guid) > GUID_MAX:
            raise NotFound("no such delivery")
        queued = replay.replay_one(web.redis, web.intake.dispatcher, guid)
    except NotFound:
        flash(REPLAY_UNKNOWN.format(guid=guid[:GUID_MAX]), "error")
        return redirect(url_for("dashboard.index", _anchor="deliveries"), code=303)
    flash(REPLAYED.format(guid=guid, tasks=", ".join(queued) or "no task"), "ok")
    target = request.form.get("back") == "failed"
    return redirect(url_for("dashboard.index", _anchor="failed" if target else "deliveries"), code=303)


@bp.get("/api/scorecard")
@require_admin
def scorecard_json() -> Response:
    web = state()
    now = time.time()
    rows = report_data.scorecard_rows(web.redis, web.policy, now=now)
    return jsonify(generated_at=now, window_days=7, rows=[r.public() for r in rows])
