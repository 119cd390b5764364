"""workflow_job deliveries without `created_at` (older GitHub Enterprise Server): recorded with the best time known,
marked approximate; what cannot be used fails with a short reason, never a traceback."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from runnerguard.domain.events import parse_workflow_job
from runnerguard.domain.timeline import PayloadError, merge, parse_time
from runnerguard.store import deliveries
from tests.helpers import SECRET, admin_headers, dumps, signed_headers

ROOT = Path(__file__).resolve().parents[1]
HANDWRITTEN = Path(__file__).resolve().parent / "fixtures" / "legacy_workflow_job"
LEGACY = "fixtures/github/legacy-webhooks/workflow_job"


def handwritten(name: str) -> dict[str, Any]:
    return json.loads((HANDWRITTEN / f"{name}.json").read_text())  # type: ignore[no-any-return]


def fold(events: list[tuple[dict[str, Any], float]]) -> dict[str, Any]:
    record = None
    for payload, seen in events:
        record = merge(record, parse_workflow_job(payload), seen)
    assert record is not None
    return record


@pytest.fixture(scope="module")
def shared_legacy(shared_dir: Path) -> list[dict[str, Any]]:
    folder = shared_dir / LEGACY
    files = sorted(folder.glob("*.json"))
    if not files:
        pytest.skip(f"no legacy workflow_job fixtures under {folder}")
    return [json.loads(p.read_text()) for p in files]


def test_the_shared_legacy_payloads_really_lack_created_at(shared_legacy: list[dict[str, Any]]) -> None:
    assert len(shared_legacy) >= 3
    assert all("created_at" not in p["workflow_job"] for p in shared_legacy)


def test_shared_legacy_queued_payloads_take_started_at_as_their_queue_time(
        shared_legacy: list[dict[str, Any]]) -> None:
    for payload in shared_legacy:
        record = fold([(payload, 1_900_000_000.0)])
        assert record["created_at"] == payload["workflow_job"]["started_at"]
        assert record["created_at_approximate"] is True
        assert record["status"] == "queued" and record["started_at"] is None and record["queue_seconds"] is None


def test_a_handwritten_legacy_lifecycle_has_approximate_but_sane_timings() -> None:
    queued, completed = handwritten("ghes_queued"), handwritten("ghes_completed")
    record = fold([(queued, 1_900_000_000.0), (completed, 1_900_000_900.0)])
    assert record["created_at"] == "2026-11-30T08:15:02Z" and record["created_at_approximate"] is True
    assert record["queue_seconds"] == 150.0 and record["run_seconds"] == 600.0
    assert record["conclusion"] == "failure" and record["runner_name"] == "builder-01"


def test_without_a_queued_delivery_the_first_arrival_bounds_the_creation() -> None:
    completed = handwritten("ghes_completed")
    started = parse_time(completed["workflow_job"]["started_at"])
    assert started is not None
    # Arrived after the job started (the usual case): the start is the better bound, queue wait 0.
    late = fold([(completed, started + 700)])
    assert late["created_ts"] == started and late["queue_seconds"] == 0.0 and late["created_at_approximate"]
    # Arrived before the recorded start (a clock skew): the arrival it is.
    early = fold([(completed, started - 30)])
    assert early["created_ts"] == started - 30 and early["queue_seconds"] == 30.0


def test_a_delivery_with_created_at_makes_the_record_exact_whatever_the_order() -> None:
    queued, completed = handwritten("ghes_queued"), handwritten("ghes_completed")
    modern = copy.deepcopy(completed)
    modern["workflow_job"]["created_at"] = "2026-11-30T08:14:00Z"
    for order in ([queued, modern], [modern, queued]):
        record = fold([(p, 1_900_000_000.0 + i) for i, p in enumerate(order)])
        assert record["created_at"] == "2026-11-30T08:14:00Z" and record["created_at_approximate"] is False


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_legacy_records_do_not_depend_on_order_or_repeats(data: st.DataObject) -> None:
    events = [(handwritten("ghes_queued"), 100.0), (handwritten("ghes_completed"), 900.0)]
    extra = data.draw(st.lists(st.sampled_from(events), max_size=4))
    assert fold(data.draw(st.permutations(events + extra))) == fold(events)


@pytest.mark.parametrize("mutate, message", [
    (lambda j: j.pop("id"), "missing id"),
    (lambda j: j.pop("run_id"), "missing run_id"),
    (lambda j: j.update(started_at="last tuesday"), "bad timestamp"),
    (lambda j: j.update(created_at=12), "created_at has the wrong type"),
])
def test_what_truly_cannot_be_used_still_fails_with_a_reason(mutate: Any, message: str) -> None:
    payload = handwritten("ghes_queued")
    mutate(payload["workflow_job"])
    with pytest.raises(PayloadError, match=message):
        parse_workflow_job(payload)


def _deliver(client: FlaskClient, payload: dict[str, Any], guid: str) -> None:
    body = dumps(payload)
    answer = client.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job", guid=guid))
    assert answer.status_code == 202, answer.get_json()


def test_legacy_deliveries_are_recorded_through_intake_worker_and_api(client: FlaskClient, redis_client: redis.Redis,
                                                                     drain: Any, shared_dir: Path) -> None:
    folder = shared_dir / LEGACY
    payloads = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    payloads += [handwritten("ghes_queued"), handwritten("ghes_completed")]
    for index, payload in enumerate(payloads):
        _deliver(client, payload, f"legacy-{index}")
    drain()
    for index in range(len(payloads)):
        delivery = deliveries.load(redis_client, f"legacy-{index}")
        assert delivery is not None and delivery.state == "done", delivery and delivery.summary()
    jobs = client.get("/api/jobs", headers=admin_headers()).get_json()["jobs"]
    builder = next(j for j in jobs if j["repo"] == "platform/builder")
    assert builder["created_at_approximate"] is True and builder["queue_seconds"] == 150.0
    assert all(j["created_at_approximate"] is True for j in jobs)


def test_a_worker_process_reports_an_unusable_payload_in_one_line_without_a_traceback(
        client: FlaskClient, redis_client: redis.Redis, redis_url: str) -> None:
    broken = handwritten("ghes_queued")
    del broken["workflow_job"]["id"]
    _deliver(client, broken, "legacy-broken")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNERGUARD_", "REDIS_"))}
    env |= {"GITHUB_WEBHOOK_SECRET": SECRET, "REDIS_URL": redis_url, "RUNNERGUARD_HOST": "test-host"}
    result = subprocess.run([sys.executable, "worker.py", "--burst", "events"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-2000:]
    delivery = deliveries.load(redis_client, "legacy-broken")
    assert delivery is not None and delivery.state == "failed"
    assert "missing id" in json.dumps(delivery.summary())
    assert "task failed for good" in output and "missing id" in output
    assert "Traceback" not in output, output[-3000:]
