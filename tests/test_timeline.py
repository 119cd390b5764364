"""The job timeline merge: order- and repeat-independent, derived timings, bad payloads."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runnerguard.domain.events import parse_workflow_job
from runnerguard.domain.timeline import PayloadError, merge, merge_records


def job_payload(action: str, **job: Any) -> dict[str, Any]:
    base = {
        "id": 11, "run_id": 5, "run_attempt": 1, "labels": ["self-hosted", "Linux"], "name": "build",
        "workflow_name": "CI", "head_branch": "main", "status": action, "conclusion": None,
        "created_at": "2026-11-27T10:00:00Z", "started_at": "2026-11-27T10:00:00Z", "completed_at": None,
        "runner_name": None, "runner_id": None, "runner_group_name": None,
    }
    base.update(job)
    return {"action": action, "workflow_job": base, "repository": {"id": 3, "full_name": "octo/app"}}


def lifecycle(conclusion: str = "success") -> list[tuple[dict[str, Any], float]]:
    runner = {"runner_name": "laptop-extra", "runner_id": 22, "runner_group_name": "Default"}
    return [
        (job_payload("queued"), 100.0),
        (job_payload("waiting"), 101.0),
        (job_payload("in_progress", started_at="2026-11-27T10:05:00Z", status="in_progress", **runner), 400.0),
        (job_payload("completed", started_at="2026-11-27T10:05:00Z", completed_at="2026-11-27T10:35:30Z",
                     status="completed", conclusion=conclusion, **runner), 2200.0),
    ]


def fold(events: list[tuple[dict[str, Any], float]]) -> dict[str, Any]:
    record = None
    for payload, seen in events:
        record = merge(record, parse_workflow_job(payload), seen)
    assert record is not None
    return record


def test_lifecycle_derives_queue_wait_and_run_time() -> None:
    record = fold(lifecycle("failure"))
    assert record["status"] == "completed"
    assert record["conclusion"] == "failure"
    assert record["queue_seconds"] == 300.0
    assert record["run_seconds"] == 1830.0
    assert record["runner_name"] == "laptop-extra"
    assert record["started_at"] == "2026-11-27T10:05:00Z"
    assert record["seen"] == {"completed": 2200.0, "in_progress": 400.0, "queued": 100.0, "waiting": 101.0}


def test_queued_only_job_has_no_start_even_though_github_sets_started_at() -> None:
    record = fold(lifecycle()[:1])
    assert record["status"] == "queued"
    assert record["started_at"] is None and record["queue_seconds"] is None and record["run_seconds"] is None


def test_cancelled_before_a_runner_took_it_has_no_run_time() -> None:
    cancelled = job_payload("completed", status="completed", conclusion="cancelled",
                            completed_at="2026-11-27T11:00:00Z", started_at="2026-11-27T11:00:00Z")
    record = fold([(job_payload("queued"), 1.0), (cancelled, 2.0)])
    assert record["conclusion"] == "cancelled"
    assert record["run_seconds"] is None
    assert record["started_at"] is None


def test_started_before_created_is_clamped_to_zero_wait() -> None:
    runner = {"runner_name": "r", "runner_id": 1}
    early = job_payload("in_progress", created_at="2026-11-27T10:00:05Z", started_at="2026-11-27T10:00:00Z", **runner)
    record = fold([(early, 1.0)])
    assert record["queue_seconds"] == 0.0


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_order_and_any_repeats_give_the_same_record(data: st.DataObject) -> None:
    conclusion = data.draw(st.sampled_from(["success", "failure", "cancelled", "timed_out"]))
    events = lifecycle(conclusion)
    repeated = data.draw(st.lists(st.sampled_from(events), min_size=0, max_size=8))
    shuffled = data.draw(st.permutations(events + repeated))
    assert fold(shuffled) == fold(events)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_real_sequences_from_shared_fixtures_are_order_independent(data: st.DataObject, shared_dir: Path) -> None:
    folder = shared_dir / "fixtures/github/webhooks/workflow_job"
    payloads = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    by_job: dict[int, list[tuple[dict[str, Any], float]]] = {}
    for index, payload in enumerate(payloads):
        by_job.setdefault(payload["workflow_job"]["id"], []).append((payload, float(index)))
    for events in by_job.values():
        extra = data.draw(st.lists(st.sampled_from(events), max_size=5))
        assert fold(data.draw(st.permutations(events + extra))) == fold(events)


def test_join_laws_hold_for_records() -> None:
    events = lifecycle()
    a, b, c = fold(events[:2]), fold(events[1:3]), fold(events[3:])
    assert merge_records(a, b) == merge_records(b, a)
    assert merge_records(merge_records(a, b), c) == merge_records(a, merge_records(b, c))
    assert merge_records(a, a) == a


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.pop("workflow_job"), "missing workflow_job"),
    (lambda p: p.pop("repository"), "missing repository"),
    (lambda p: p["workflow_job"].pop("id"), "missing id"),
    (lambda p: p["workflow_job"].update(id="eleven"), "id has the wrong type"),
    (lambda p: p["workflow_job"].update(labels="self-hosted"), "labels"),
    (lambda p: p["workflow_job"].update(created_at="yesterday"), "bad timestamp"),
    (lambda p: p.update(action="exploded"), "unknown workflow_job action"),
    (lambda p: p["workflow_job"].update(run_id=True), "run_id has the wrong type"),
])
def test_bad_payloads_raise_a_clear_payload_error(mutate: Any, message: str) -> None:
    payload = copy.deepcopy(job_payload("queued"))
    mutate(payload)
    with pytest.raises(PayloadError, match=message):
        parse_workflow_job(payload)
