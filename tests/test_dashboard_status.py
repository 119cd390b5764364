"""What a person sees at the top of the dashboard and in its tables: status lines, safe links, plain words, targets."""

from __future__ import annotations

import re
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from app import create_app
from config import Settings, parse_policy
from runnerguard.queue import inspect
from runnerguard.queue import tasks as rq_tasks
from runnerguard.store import rollback_state
from tests.helpers import admin_headers
from tests.test_dashboard import login
from tests.test_timings import deliver, job_events

LAPTOP = ["self-hosted", "Linux", "X64", "fedora", "nobara"]
GPU = ["self-hosted", "gpu"]
POLICY = """
[[pool]]
name = "laptop"
labels = ["self-hosted", "Linux", "X64", "fedora", "nobara"]
hosts = ["laptop-extra"]

[[pool]]
name = "gpu"
labels = ["self-hosted", "gpu"]
runners = 3
scorecard = { failure_rate = 0.25 }

[scorecard]
build_time = "20m"
"""


@pytest.fixture()
def policy_settings(settings: Settings, tmp_path: Path) -> Settings:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return settings.with_overrides(policy_path=path)


@pytest.fixture()
def web(policy_settings: Settings, redis_client: redis.Redis) -> FlaskClient:
    return create_app(policy_settings).test_client()


def play(client: FlaskClient, drain: Any, jobs: list[tuple[int, str, float, list[str], str | None]]) -> None:
    """(job id, conclusion, created, labels, html_url or None) through the real intake and worker."""
    for job_id, conclusion, created, labels, url in jobs:
        for i, event in enumerate(job_events(job_id, conclusion, created=created, labels=labels)):
            if url is not None:
                event["workflow_job"]["html_url"] = url
            deliver(client, event, f"s-{job_id}-{i}")
    drain(policy=parse_policy(tomllib.loads(POLICY)))


def page(client: FlaskClient) -> str:
    login(client)
    response = client.get("/")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def status_line(html: str, pool: str) -> str:
    match = re.search(rf'<div class="status (\w+)" data-pool="{pool}" data-state="(\w+)">(.*?)</div>', html, re.S)
    assert match, f"no status line for {pool}"
    return f"{match.group(1)} {match.group(2)} " + re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(3)))


def test_every_pool_has_a_status_line_above_everything_else(web, drain) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    play(web, drain, [(500 + n, "failure" if n < 7 else "success", now - 3 * 3600 + 60 * n, LAPTOP, None)
                      for n in range(10)])
    html = page(web)
    assert html.index('id="status"') < html.index('id="scorecard"') < html.index('id="pool-laptop"')
    laptop, gpu = status_line(html, "laptop"), status_line(html, "gpu")
    # no App in this test: the fired trigger could not act, so the pool is blocked and says why (issue #14)
    assert laptop.startswith("bad blocked") and "laptop: blocked" in laptop and "70% of 10 jobs failed in 24h" in laptop
    assert "the GitHub App is not configured (open /setup)" in laptop and "Next:" in laptop
    assert gpu.startswith("ok healthy") and "only 0 finished jobs in 24h (needs 6)" in gpu


def test_a_blocked_pool_shows_its_reason_and_a_link_to_setup(web, redis_client) -> None:  # type: ignore[no-untyped-def]
    rollback_state.save(redis_client, rollback_state.RollbackState(
        pool="laptop", repo="octo/app", state="blocked",
        reason="the GitHub App is not configured (open /setup)"), event="blocked")
    html = page(web)
    laptop = status_line(html, "laptop")
    assert laptop.startswith("bad blocked") and "laptop: blocked" in laptop
    assert "the GitHub App is not configured (open /setup)" in laptop and "Set up the GitHub App" in laptop
    assert re.search(r'<div class="status bad" data-pool="laptop".*?<a class="action" href="/setup"', html, re.S)
    rollbacks = html.split('id="rollbacks"', 1)[1].split("</section>", 1)[0]
    assert 'data-state="blocked"' in rollbacks and "the GitHub App is not configured" in rollbacks


def test_rolled_back_pool_links_its_pr_and_gives_the_restore_command(web, redis_client) -> None:  # type: ignore[no-untyped-def]
    rollback_state.save(redis_client, rollback_state.RollbackState(
        pool="laptop", repo="octo/app", state="rolled_back", pr_url="https://github.com/octo/app/pull/7",
        pr_number=7, reason="70% of 10 jobs failed in 24h"), event="merged")
    laptop = status_line(page(web), "laptop")
    assert laptop.startswith("bad rolled_back") and "laptop: rolled back" in laptop
    assert "flask --app app rollback restore laptop --repo octo/app" in laptop and "rollback PR #7" in laptop


def test_links_are_github_pages_only_never_a_payload_script(web, drain, redis_client) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    good = "https://github.com/octo/app/actions/runs/6010/job/601"
    play(web, drain, [(601, "success", now - 3600, LAPTOP, good),
                      (602, "success", now - 3500, LAPTOP, "javascript:alert(document.cookie)"),
                      (603, "success", now - 3400, LAPTOP, "https://github.com.evil.example/octo/app"),
                      (604, "success", now - 3300, LAPTOP, None)])
    rollback_state.save(redis_client, rollback_state.RollbackState(
        pool="gpu", repo="octo/app", state="pr_open", pr_url="javascript:alert(1)", pr_number=8,
        restore_pr_url="https://evil.example/octo/app/pull/9", restore_pr_number=9), event="opened")
    html = page(web)
    jobs = html.split('id="jobs"', 1)[1].split("</section>", 1)[0]
    assert f'<a href="{good}"' in jobs and jobs.count("<a href=") == 1
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert not [h for h in hrefs if "javascript" in h.lower() or "evil.example" in h], hrefs
    assert "alert(" not in html
    assert "rollback PR #8" not in status_line(html, "gpu")  # its URL is not GitHub's: no link, and no fake one
    # the payload's URL still reaches the API untouched: only rendering is refused
    assert client_json(web, "/api/rollbacks")["rollbacks"][0]["pr_url"] == "javascript:alert(1)"


def client_json(client: FlaskClient, path: str) -> Any:
    return client.get(path, headers=admin_headers()).get_json()


def test_links_to_the_configured_github_host(policy_settings, redis_client, drain) -> None:  # type: ignore[no-untyped-def]
    web = create_app(policy_settings.with_overrides(github_web_url="https://ghe.example.com")).test_client()
    now = time.time()
    play(web, drain, [(701, "success", now - 3600, LAPTOP, "https://ghe.example.com/octo/app/actions/runs/1/job/701")])
    assert 'href="https://ghe.example.com/octo/app/actions/runs/1/job/701"' in page(web)


def test_failed_tasks_show_a_delivery_only_for_delivery_tasks(web, drain, redis_client) -> None:  # type: ignore[no-untyped-def]
    # open_rollback's first id is a pool name: it must not show as a delivery nor get a Replay button
    rq_tasks.enqueue(rq_tasks.OPEN_ROLLBACK, "retired-pool", "octo/app", connection=redis_client,
                     job_id="rollback_retired-pool_octo-app")
    rq_tasks.queue("events", redis_client).enqueue("json.loads", "d-gone", job_id="d-gone_timings")
    drain()
    failed = page(web).split('id="failed"', 1)[1].split("</section>", 1)[0]
    rows = re.findall(r'<tr class="failed-task">(.*?)</tr>', failed, re.S)
    assert len(rows) == 2
    pool_row = next(r for r in rows if "open_rollback" in r)
    assert "(retired-pool)" in pool_row and 'class="id delivery-cell">—<' in pool_row and "Replay" not in pool_row
    assert 'data-guid="retired-pool"' not in failed
    delivery_row = next(r for r in rows if "loads" in r)
    assert 'class="id delivery-cell">d-gone<' in delivery_row and 'data-guid="d-gone"' in delivery_row


def test_the_delivery_of_a_failed_task_follows_the_task_table() -> None:
    assert inspect.delivery_of(rq_tasks.TIMINGS.path, "g-1_timings", "g-1") == "g-1"
    assert inspect.delivery_of(rq_tasks.OPEN_ROLLBACK.path, "rollback_laptop_octo-app", "laptop") is None
    assert inspect.delivery_of(rq_tasks.SWEEP.path, "sweep", None) is None
    assert inspect.delivery_of("os.system", "laptop_x", "laptop") == "laptop"  # job id convention, outside the table
    assert inspect.delivery_of("os.system", "rollback_laptop", "laptop") is None


def test_plain_words_and_targets_that_follow_the_pool(web, drain) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    play(web, drain, [(800, "success", now - 7200, LAPTOP, None), (801, "success", now - 3600, GPU, None)])
    html = page(web)
    assert "Phase 3" not in html and "seed plans" not in html and "3-4" not in html
    assert "How each pool did this week" in html and "the pool's 1 runner" in html and "3 runners" in html
    body = client_json(web, "/api/scorecard")
    rows = {(r["pool"], r["metric"]): r for r in body["rows"]}
    # a one-host pool passes "peak jobs at once" with its one runner; a 3-runner pool needs 3
    assert rows[("laptop", "peak_concurrency")]["target"] == ">= 1"
    assert rows[("laptop", "peak_concurrency")]["status"] == "pass"
    assert rows[("gpu", "peak_concurrency")]["target"] == ">= 3"
    assert rows[("gpu", "peak_concurrency")]["status"] == "fail"
    assert rows[("laptop", "build_time")]["target"] == "< 20 min"  # [scorecard] build_time = "20m"
    assert rows[("gpu", "failure_rate")]["target"] == "< 25%" and rows[("laptop", "failure_rate")]["target"] == "< 10%"
    scorecard = html.split('id="scorecard"', 1)[1].split("</section>", 1)[0]
    assert "&gt;= 1" in scorecard and "&gt;= 3" in scorecard and "&lt; 20 min" in scorecard


def test_the_latest_failure_rate_and_the_threshold_crossing_are_marked(web, drain) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    healthy = [(900 + n, "success", now - 40 * 3600 + 60 * n, LAPTOP, None) for n in range(6)]
    failing = [(950 + n, "failure" if n < 6 else "success", now - 2 * 3600 + 60 * n, LAPTOP, None) for n in range(8)]
    play(web, drain, healthy + failing)
    html = page(web)
    chart = html.split('id="pool-laptop"', 1)[1].split("</svg>", 1)[0]
    assert "now 75%" in chart and 'class="last"' in chart
    assert chart.count('class="crossing"') == 1 and "crossed " in chart
    assert 'Failure rate, now <span class="now">75%</span>' in html


def test_the_favicon_is_served_to_anyone(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    assert response.get_data(as_text=True).startswith("<svg")
    assert 'rel="icon" href="/favicon.ico"' in client.get("/login").get_data(as_text=True)
