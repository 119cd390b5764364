"""Recovery: deliveries GitHub failed to make while runnerguard was down are redelivered and recorded once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from werkzeug.serving import make_server

from app import create_app
from config import Settings
from devtools.redis_server import free_port
from runnerguard.services.recovery import checkpoint, recover
from runnerguard.store import deliveries, delivery_index, jobstore
from tests.github_fixtures import REPO
from tests.helpers import SECRET, signed_headers

ACTIONS = ("queued", "waiting", "in_progress", "completed")


class LiveApp:
    """runnerguard's Flask app on a real loopback port, in a thread."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.server = make_server("127.0.0.1", port, create_app(settings), threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture()
def port() -> int:
    return free_port()


@pytest.fixture()
def live(settings: Settings, port: int) -> Iterator[Any]:
    started: list[LiveApp] = []

    def start() -> LiveApp:
        started.append(LiveApp(settings, port))
        return started[-1]

    yield start
    for app in started:
        app.stop()


def emit_outage(github_sim, jobs: int) -> list[Any]:  # type: ignore[no-untyped-def]
    sent = []
    for n in range(jobs):
        job = github_sim.add_job(REPO, name=f"job-{n}", labels=["self-hosted", "linux"])
        job.conclusion = "failure" if n % 3 == 0 else "success"
        for action in ACTIONS:
            sent.append(github_sim.emit_workflow_job(REPO, job.id, action))
    return sent


def job_records(client: redis.Redis) -> dict[str, Any]:
    records = {}
    for key in client.scan_iter("rg:job:*"):
        record = jobstore.decode(client, client.get(key))
        record.pop("seen")
        records[key.decode()] = record
    return records


def test_deliveries_missed_while_down_are_all_recovered_once(
        github_sim, sim_repo, github_app, fake_clock, settings, redis_client, live, port, drain) -> None:  # type: ignore[no-untyped-def]
    github_sim.configure_webhook(f"http://127.0.0.1:{port}/webhooks/github", SECRET)
    sent = emit_outage(github_sim, 50)  # runnerguard is down: every one of the 200 fails to connect
    assert len(sent) == 200 and all(d.status_code == 0 for d in sent)
    assert delivery_index.count(redis_client) == 0
    live()  # runnerguard is back
    report = recover(redis_client, github_app, clock=fake_clock)
    assert (report.scanned, report.missing, len(report.requested), report.failed) == (200, 200, 200, [])
    assert delivery_index.count(redis_client) == 200
    assert {d.guid for d in sent} == {guid for _at, guid in delivery_index.entries(redis_client)}
    drain()
    recovered = job_records(redis_client)
    # A second run redelivers nothing: every GUID is recorded now.
    again = recover(redis_client, github_app, clock=fake_clock)
    assert again.missing == 0 and again.requested == []
    assert checkpoint(redis_client) is not None

    # The same 200 deliveries, made while runnerguard was up, end in exactly the same timeline.
    redis_client.flushall()

    client = create_app(settings).test_client()
    for delivery in sent:
        headers = signed_headers(delivery.body, "workflow_job", guid=delivery.guid)
        assert client.post("/webhooks/github", data=delivery.body, headers=headers).status_code == 202
    drain()
    assert job_records(redis_client) == recovered
    assert len(recovered) == 50


def test_recorded_guids_are_never_redelivered_and_asks_wait_30_minutes(
        github_sim, sim_repo, github_app, fake_clock, redis_client, live, port) -> None:  # type: ignore[no-untyped-def]
    github_sim.configure_webhook(f"http://127.0.0.1:{port}/webhooks/github", SECRET)
    live()
    ok = emit_outage(github_sim, 1)  # delivered fine
    github_sim.configure_webhook(f"http://127.0.0.1:{free_port()}/webhooks/github", SECRET)  # now a dead URL
    lost = emit_outage(github_sim, 1)
    first = recover(redis_client, github_app, clock=fake_clock, since=fake_clock() - 3600)
    assert set(first.requested) == {d.guid for d in lost}  # asked, but the redelivery failed again (dead URL)
    assert not any(deliveries.exists(redis_client, d.guid) for d in lost)
    assert all(deliveries.exists(redis_client, d.guid) for d in ok)
    soon = recover(redis_client, github_app, clock=fake_clock, since=fake_clock() - 3600)
    assert soon.requested == [] and soon.skipped_recently_asked == 4
    fake_clock.advance(31 * 60)
    later = recover(redis_client, github_app, clock=fake_clock, since=fake_clock() - 7200)
    assert set(later.requested) == {d.guid for d in lost}


def test_failed_redelivery_requests_hold_the_checkpoint_back(
        github_sim, sim_repo, github_app, fake_clock, redis_client, port) -> None:  # type: ignore[no-untyped-def]
    github_sim.configure_webhook(f"http://127.0.0.1:{port}/webhooks/github", SECRET)
    lost = emit_outage(github_sim, 1)
    github_sim.fail_next(20, 502, match="/attempts")
    report = recover(redis_client, github_app, clock=fake_clock)
    assert len(report.failed) == 4 and report.requested == []
    held = checkpoint(redis_client)
    assert held is not None and held < min(d.delivered_at for d in lost)
    retry = recover(redis_client, github_app, clock=fake_clock)
    assert set(retry.requested) == {d.guid for d in lost}  # not skipped as "recently asked": the ask had failed


def test_cli_recover_needs_a_configured_app(app) -> None:  # type: ignore[no-untyped-def]
    result = app.test_cli_runner().invoke(args=["deliveries", "recover", "--since", "72h"])
    assert result.exit_code == 1 and "not configured" in result.output
    bad = app.test_cli_runner().invoke(args=["deliveries", "recover", "--since", "whenever"])
    assert bad.exit_code == 2


def test_stale_deliveries_the_recovery_asked_for_are_recorded_and_replays_of_them_are_not(
        github_sim, sim_repo, github_app, fake_clock, settings, redis_client, port) -> None:  # type: ignore[no-untyped-def]
    github_sim.configure_webhook(f"http://127.0.0.1:{port}/webhooks/github", SECRET)
    fake_clock.advance(-2 * 3600)  # an outage two hours ago, longer ago than this install's age limit
    lost = emit_outage(github_sim, 1)
    fake_clock.advance(2 * 3600)
    strict = settings.with_overrides(max_delivery_age_hours=1)
    app = LiveApp(strict, port)
    try:
        # A captured body of that time under a fresh id: too old, nobody asked for it.
        client = create_app(strict).test_client()
        replayed = client.post("/webhooks/github", data=lost[0].body,
                               headers=signed_headers(lost[0].body, "workflow_job", guid=str(uuid.uuid4())))
        assert replayed.status_code == 200 and replayed.get_json()["reason"] == "stale"
        report = recover(redis_client, github_app, clock=fake_clock)
        assert set(report.requested) == {d.guid for d in lost}
        assert all(deliveries.exists(redis_client, d.guid) for d in lost)
    finally:
        app.stop()
