"""The dashboard without a browser: login, session cookie flags, CSRF, charts, replay form, /api/scorecard."""

from __future__ import annotations

import re
import time

from flask.testing import FlaskClient

from app import create_app
from config import Policy
from runnerguard.domain import rollup
from runnerguard.queue import tasks as rq_tasks
from runnerguard.services import reports as report_data
from runnerguard.store import rollback_state
from runnerguard.web.session_auth import derive_secret_key
from tests.helpers import ADMIN, admin_headers
from tests.test_timings import deliver, job_events

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf(client: FlaskClient, path: str = "/login") -> str:
    match = CSRF_RE.search(client.get(path).get_data(as_text=True))
    assert match, "no CSRF token in the form"
    return match.group(1)


def login(client: FlaskClient, token: str = ADMIN) -> object:
    return client.post("/login", data={"token": token, "csrf_token": csrf(client), "next": "/"})


def seed(client: FlaskClient, drain: object, count: int = 6) -> None:
    now = time.time()
    for n in range(count):
        for i, event in enumerate(job_events(900 + n, "failure" if n % 3 == 0 else "success",
                                             created=now - 3 * 3600 + 60 * n)):
            deliver(client, event, f"d-{n}-{i}")
    drain()  # type: ignore[operator]


def test_dashboard_requires_login(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert client.post("/dashboard/deliveries/x/replay").status_code == 302
    # the Bearer token is for the API: it does not open the dashboard
    assert client.get("/", headers=admin_headers()).status_code == 302


def test_login_sets_a_secure_httponly_lax_cookie_and_logout_clears_it(client) -> None:  # type: ignore[no-untyped-def]
    response = login(client)
    assert response.status_code == 302 and response.headers["Location"] == "/"  # type: ignore[attr-defined]
    cookie = response.headers["Set-Cookie"]  # type: ignore[attr-defined]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert ADMIN not in cookie
    assert client.get("/").status_code == 200
    token = csrf(client, "/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/").status_code == 302


def test_a_new_secret_key_ends_the_sessions_signed_with_the_old_one(app, client) -> None:  # type: ignore[no-untyped-def]
    # The session serializer is built once per key set (CachedSigningSessionInterface): a key change must show.
    login(client)
    assert client.get("/").status_code == 200
    app.config["SECRET_KEY_FALLBACKS"] = [app.config["SECRET_KEY"]]
    app.config["SECRET_KEY"] = "a-rotated-key"
    assert client.get("/").status_code == 200  # still valid under the fallback (and re-signed with the new key)
    app.config["SECRET_KEY"] = "rotated-again"
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert client.get("/").status_code == 302


def test_wrong_token_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    response = login(client, "not-the-token")
    assert response.status_code == 403  # type: ignore[attr-defined]
    assert "not the admin token" in response.get_data(as_text=True)  # type: ignore[attr-defined]
    assert client.get("/").status_code == 302
    assert login(client, "").status_code == 403  # type: ignore[attr-defined]


def test_login_without_csrf_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    client.get("/login")
    assert client.post("/login", data={"token": ADMIN}).status_code == 400
    assert client.post("/login", data={"token": ADMIN, "csrf_token": "forged"}).status_code == 400
    assert client.get("/").status_code == 302


def test_next_is_only_a_local_path(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/login", data={"token": ADMIN, "csrf_token": csrf(client), "next": "//evil.example/x"})
    assert response.status_code == 400 and "Location" not in response.headers  # refused, not rewritten
    response = client.post("/login", data={"token": ADMIN, "csrf_token": csrf(client), "next": ""})
    assert response.headers["Location"] == "/"


def test_dashboard_disabled_without_admin_token(settings, redis_client) -> None:  # type: ignore[no-untyped-def]
    client = create_app(settings.with_overrides(admin_token="")).test_client()
    assert client.get("/login").status_code == 403
    assert client.get("/").status_code == 302


def test_dashboard_shows_charts_jobs_deliveries_and_rollbacks(client, redis_client, drain) -> None:  # type: ignore[no-untyped-def]
    seed(client, drain)
    rollback_state.save(redis_client, rollback_state.RollbackState(
        pool="self-hosted", repo="octo/app", state="rolled_back", pr_url="https://github.com/octo/app/pull/7",
        pr_number=7, reason="<b>4 of 6 failed</b>"), event="merged")
    login(client)
    started = time.perf_counter()
    page = client.get("/")
    elapsed = time.perf_counter() - started
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and elapsed < 1.0
    assert html.count('<svg class="chart"') == 4  # one pool: failure rate, running, queue wait, run time
    assert "<polyline" in html and 'class="threshold"' in html
    assert 'href="https://github.com/octo/app/pull/7"' in html
    assert "&lt;b&gt;4 of 6 failed&lt;/b&gt;" in html and "<b>4 of 6 failed</b>" not in html  # autoescaped
    assert "d-5-2" in html and 'class="replay"' in html
    assert "How each pool did this week" in html and "Peak jobs running at once" in html
    assert 'name="viewport"' in html  # phones
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # nothing loaded from elsewhere


def test_replay_form_needs_csrf_and_queues_the_delivery(client, redis_client, drain) -> None:  # type: ignore[no-untyped-def]
    seed(client, drain, count=1)
    login(client)
    assert client.post("/dashboard/deliveries/d-0-2/replay", data={}).status_code == 400
    assert client.post("/dashboard/deliveries/d-0-2/replay", data={"csrf_token": "x"}).status_code == 400
    token = csrf(client, "/")
    response = client.post("/dashboard/deliveries/d-0-2/replay", data={"csrf_token": token})
    assert response.status_code == 303
    state = client.get("/api/deliveries/d-0-2", headers=admin_headers()).get_json()["state"]
    assert state == "queued"
    page = client.get("/").get_data(as_text=True)
    assert "Replaying delivery d-0-2" in page
    missing = client.post("/dashboard/deliveries/nope/replay", data={"csrf_token": token})
    assert missing.status_code == 303
    assert "No delivery nope is recorded" in client.get("/").get_data(as_text=True)
    assert client.post(f"/dashboard/deliveries/{'x' * 65}/replay", data={"csrf_token": token}).status_code == 303


def test_scorecard_api(client, redis_client, drain) -> None:  # type: ignore[no-untyped-def]
    seed(client, drain)
    assert client.get("/api/scorecard").status_code == 401
    assert client.get("/api/scorecard", headers=admin_headers("wrong")).status_code == 403
    body = client.get("/api/scorecard", headers=admin_headers()).get_json()
    rows = {r["metric"]: r for r in body["rows"] if r["pool"] == "self-hosted"}
    assert len(rows) == 7
    assert rows["failure_rate"]["actual"] == 2 / 6 and rows["failure_rate"]["status"] == "fail"
    assert rows["build_time"]["actual"] == 540 and rows["build_time"]["status"] == "pass"
    assert rows["cache_hit_rate"]["status"] == "no data"
    assert rows["peak_concurrency"]["actual"] == 6 and rows["peak_concurrency"]["status"] == "pass"


def test_secret_key_derived_from_the_admin_token_when_unset(settings, redis_client) -> None:  # type: ignore[no-untyped-def]
    a = create_app(settings)
    b = create_app(settings)
    assert a.config["SECRET_KEY"] == b.config["SECRET_KEY"] == derive_secret_key(ADMIN)
    assert ADMIN not in a.config["SECRET_KEY"]
    explicit = create_app(settings.with_overrides(secret_key="k" * 32))
    assert explicit.config["SECRET_KEY"] == "k" * 32
    # a session opened by one worker is honoured by another (same derived key)
    client_a = a.test_client()
    login(client_a)
    cookie = client_a.get_cookie("runnerguard_session")
    assert cookie is not None
    client_b = b.test_client()
    client_b.set_cookie("runnerguard_session", cookie.value)
    assert client_b.get("/").status_code == 200
    other = create_app(settings.with_overrides(admin_token="another-token")).test_client()
    other.set_cookie("runnerguard_session", cookie.value)
    assert other.get("/").status_code == 302


def test_settled_buckets_are_kept_and_read_back(client, redis_client, drain) -> None:  # type: ignore[no-untyped-def]

    now = time.time()
    for n in range(3):
        for i, event in enumerate(job_events(950 + n, "success", created=now - 2 * 86400 + 60 * n)):
            deliver(client, event, f"k-{n}-{i}")
    drain()
    parts = report_data.pool_summaries(redis_client, Policy(), "self-hosted", now=now)
    kept = sorted(redis_client.scan_iter("rg:dash:summary:*"))
    assert len(kept) == sum(1 for p in parts if p.end <= now - 12 * 3600) and kept
    assert all(0 < redis_client.ttl(k) <= 86400 + 48 * 900 for k in kept)
    assert rollup.merge(parts).peak == 3
    # what is kept is what the next render uses: a doctored summary shows through
    busy = next(k for k in kept if rollup.Summary.from_json(redis_client.get(k)).ran)
    doctored = rollup.Summary.from_json(redis_client.get(busy))
    doctored.peak = 42
    redis_client.set(busy, doctored.to_json())
    assert rollup.merge(report_data.pool_summaries(redis_client, Policy(), "self-hosted", now=now)).peak == 42
    # an expired (here: deleted) old summary is folded again from its own hours, to the same figures
    redis_client.delete(busy)
    again = report_data.pool_summaries(redis_client, Policy(), "self-hosted", now=now)
    assert rollup.merge(again).peak == 3 and redis_client.exists(busy)
    assert [p.to_json() for p in again] == [p.to_json() for p in parts]


def test_failed_tasks_are_listed_with_a_replay_button(client, redis_client, drain) -> None:  # type: ignore[no-untyped-def]

    seed(client, drain, count=1)
    # a task that fails for good, as a handler's would: RQ keeps it in the failed registry with its delivery id
    rq_tasks.queue("github", redis_client).enqueue("json.loads", "d-0-2", job_id="d-0-2_rollback_r1")
    drain()
    login(client)
    html = client.get("/").get_data(as_text=True)
    failed = html.split('id="failed"', 1)[1]
    assert "d-0-2" in failed and "loads" in failed and "not in runnerguard&#39;s task table" in failed
    assert 'data-guid="d-0-2"' in failed
    response = client.post("/dashboard/deliveries/d-0-2/replay", data={"csrf_token": csrf(client, "/"),
                                                                          "back": "failed"})
    assert response.status_code == 303 and response.headers["Location"].endswith("#failed")
