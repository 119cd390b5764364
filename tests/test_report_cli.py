"""`flask --app app report` and `flask --app app export` on jobs recorded through the real intake and worker."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest

from tests.test_timings import deliver, job_events


@pytest.fixture()
def recorded(client, redis_client, drain) -> float:  # type: ignore[no-untyped-def]
    now = time.time()
    for n in range(5):
        for i, event in enumerate(job_events(300 + n, "failure" if n == 0 else "success", created=now - 3600 + n)):
            deliver(client, event, f"r-{n}-{i}")
    for i, event in enumerate(job_events(399, "success", created=now - 10 * 86400)):
        deliver(client, event, f"old-{i}")  # ten days ago: outside --since 7d
    drain()
    return now


def test_report_table(app, recorded) -> None:  # type: ignore[no-untyped-def]
    result = app.test_cli_runner().invoke(args=["report"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("How each pool did against its targets")
    assert lines[1].split() == ["pool", "measure", "target", "actual", "result"]
    failure = next(line for line in lines if "Failure rate" in line)
    assert "self-hosted" in failure and "20.0%" in failure and "FAIL" in failure
    build = next(line for line in lines if "Successful build time" in line)
    assert "9.0 min" in build and "PASS" in build
    assert "no data" in next(line for line in lines if "Cache hit rate" in line)
    assert lines[-1].endswith("without data") and "of 7 targets met" in lines[-1]


def test_report_json(app, recorded) -> None:  # type: ignore[no-untyped-def]
    result = app.test_cli_runner().invoke(args=["report", "--format", "json"])
    rows = json.loads(result.output)
    assert {r["metric"] for r in rows} >= {"build_time", "failure_rate", "fallback_activation"}
    assert next(r for r in rows if r["metric"] == "completion_rate")["actual"] == 1.0


def test_export_csv_since_7d(app, recorded) -> None:  # type: ignore[no-untyped-def]
    result = app.test_cli_runner().invoke(args=["export", "--since", "7d", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert sorted(int(r["job_id"]) for r in rows) == [300, 301, 302, 303, 304]
    first = next(r for r in rows if r["job_id"] == "300")
    assert first["conclusion"] == "failure" and float(first["queue_seconds"]) == 60 and first["pools"] == "self-hosted"
    everything = app.test_cli_runner().invoke(args=["export", "--since", "30d"])
    assert len(list(csv.DictReader(io.StringIO(everything.output)))) == 6


def test_export_json(app, recorded) -> None:  # type: ignore[no-untyped-def]
    result = app.test_cli_runner().invoke(args=["export", "--since", "2026-01-01T00:00:00Z", "--format", "json"])
    jobs = json.loads(result.output)
    assert len(jobs) == 6 and jobs[0]["job_id"] == 399  # oldest first
    assert json.loads(app.test_cli_runner().invoke(args=["export", "--since", "1m", "--format", "json"]).output) == []


@pytest.mark.parametrize("args, text", [
    (["export", "--since", "yesterday"], "--since must be a duration"),
    (["export", "--since", "0d"], "--since must be a duration"),
    (["export", "--since", "2026-01-01T00:00:00"], "--since must be a duration"),
    (["export", "--format", "xml"], "'xml' is not one of"),
    (["report", "--format", "csv"], "'csv' is not one of"),
])
def test_bad_options_are_usage_errors(app, redis_client, args, text) -> None:  # type: ignore[no-untyped-def]
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 2 and text in result.output


def test_cancelled_and_still_waiting_jobs_count_against_completion(app, client, recorded, drain) -> None:  # type: ignore[no-untyped-def]
    cancelled = job_events(310, "cancelled", created=recorded - 3590)  # runs while the five do
    for i, event in enumerate(cancelled):
        deliver(client, event, f"c-{i}")
    deliver(client, job_events(311, "success", created=recorded - 3 * 3600)[0], "w-0")  # queued 3 h ago, never ran
    drain()
    rows = {r["metric"]: r for r in json.loads(app.test_cli_runner().invoke(args=["report", "--format",
                                                                                     "json"]).output)}
    assert rows["completion_rate"]["actual"] == 5 / 7 and rows["completion_rate"]["status"] == "fail"
    assert rows["failure_rate"]["actual"] == 1 / 5  # cancelled counts neither way
    assert rows["queue_blocking"]["actual"] >= 3 * 3600 - 5 and rows["queue_blocking"]["status"] == "fail"
    assert rows["peak_concurrency"]["actual"] == 6  # the cancelled job ran, alongside the five
