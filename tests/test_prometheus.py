"""The Prometheus renderer: parsed back with prometheus_client's own parser."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runnerguard.store import metrics
from runnerguard.web import prometheus
from runnerguard.web.prometheus import Scrape, parse_series, render


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                found[tuple(sorted(s.labels.items()))] = s.value
    return found


def histogram_counters(values: list[float], labels: dict[str, str]) -> dict[str, float]:
    """What metrics.observe_on leaves in the counters hash, computed without Redis."""
    counters: dict[str, float] = {}
    for value in values:
        for bound in (*metrics.DURATION_BUCKETS, "+Inf"):
            if bound == "+Inf" or value <= float(bound):
                key = metrics.series("runnerguard_job_run_seconds_bucket", {**labels, "le": str(bound)})
                counters[key] = counters.get(key, 0) + 1
        key = metrics.series("runnerguard_job_run_seconds_sum", labels)
        counters[key] = counters.get(key, 0) + value
        key = metrics.series("runnerguard_job_run_seconds_count", labels)
        counters[key] = counters.get(key, 0) + 1
    return counters


def test_series_round_trip_with_escapes() -> None:
    labels = {"repo": 'we"ird\\name\nx', "pool": "laptop"}
    name, parsed = parse_series(metrics.series("runnerguard_jobs_total", labels))
    assert name == "runnerguard_jobs_total"
    assert dict(parsed) == labels


def test_malformed_series_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a series"):
        parse_series("9bad{")


def test_counters_render_with_help_and_type() -> None:
    counters = {
        metrics.series("runnerguard_webhook_deliveries_total", {"event": "workflow_job", "outcome": "accepted"}): 7.0,
        metrics.series("runnerguard_jobs_total", {"pool": "laptop", "repo": "octo/app", "conclusion": "failure"}): 2.0,
    }
    text = render(Scrape(counters=counters))
    assert "# HELP runnerguard_jobs_total " in text and "# TYPE runnerguard_jobs_total counter" in text
    parsed = families(text)
    assert parsed["runnerguard_webhook_deliveries"].type == "counter"  # type: ignore[attr-defined]
    assert samples(text, "runnerguard_jobs_total") == {
        (("conclusion", "failure"), ("pool", "laptop"), ("repo", "octo/app")): 2.0}
    assert text.endswith("\n")


def test_histogram_buckets_in_order_with_missing_bounds_filled() -> None:
    counters = histogram_counters([5000.0, 20.0, 25000.0], {"pool": "laptop"})
    counters.update(histogram_counters([45.0], {"pool": "gpu"}))
    text = render(Scrape(counters=counters))
    family = families(text)["runnerguard_job_run_seconds"]
    assert family.type == "histogram"  # type: ignore[attr-defined]
    laptop = [s for s in family.samples if s.labels.get("pool") == "laptop"]  # type: ignore[attr-defined]
    buckets = [(s.labels["le"], s.value) for s in laptop if s.name.endswith("_bucket")]
    bounds = [float(le) for le, _ in buckets]
    assert bounds == sorted(bounds) and bounds[-1] == float("inf")
    assert len(buckets) == len(metrics.DURATION_BUCKETS) + 1
    assert dict(buckets)["10"] == 0 and dict(buckets)["30"] == 1 and dict(buckets)["7200"] == 2
    assert dict(buckets)["+Inf"] == 3
    values = [v for _, v in buckets]
    assert values == sorted(values)  # cumulative
    assert samples(text, "runnerguard_job_run_seconds_sum")[(("pool", "laptop"),)] == 30020.0
    assert samples(text, "runnerguard_job_run_seconds_count")[(("pool", "gpu"),)] == 1


def test_gauges_rollback_prewarm_and_queues() -> None:
    scrape = Scrape(
        pool_failure_rates={"laptop": 0.25, "idle": None},
        rollback_states=[("laptop", "octo/app", "rolled_back")],
        rollback_state_names=("healthy", "pr_open", "rolled_back", "restoring"),
        prewarm_rows=[{"name": "vosk", "host": "laptop-extra", "hits": 8, "misses": 1, "errors": 1, "skipped": 3,
                       "hit_rate": 0.8}],
        queues=[("events", 4, 1), ("github", 0, 0)],
    )
    text = render(scrape)
    assert samples(text, "runnerguard_pool_failure_rate") == {(("pool", "laptop"),): 0.25}  # no data: no sample
    states = samples(text, "runnerguard_rollback_state")
    assert states[(("pool", "laptop"), ("repo", "octo/app"), ("state", "rolled_back"))] == 1
    assert sum(states.values()) == 1 and len(states) == 4
    prewarm = samples(text, "runnerguard_prewarm_total")
    assert prewarm[(("cache", "vosk"), ("host", "laptop-extra"), ("result", "hit"))] == 8
    assert prewarm[(("cache", "vosk"), ("host", "laptop-extra"), ("result", "skipped"))] == 3
    assert samples(text, "runnerguard_cache_hit_rate") == {(("cache", "vosk"), ("host", "laptop-extra")): 0.8}
    assert samples(text, "runnerguard_queue_depth")[(("queue", "events"),)] == 4
    assert samples(text, "runnerguard_failed_tasks")[(("queue", "events"),)] == 1
    assert families(text)["runnerguard_queue_depth"].type == "gauge"  # type: ignore[attr-defined]


def test_a_bad_field_in_the_hash_does_not_break_the_scrape() -> None:
    text = render(Scrape(counters={"}{garbage": 1.0, metrics.series("runnerguard_jobs_total", {"pool": "p"}): 1.0}))
    assert "garbage" not in text
    assert samples(text, "runnerguard_jobs_total") == {(("pool", "p"),): 1.0}


def test_every_family_has_help_and_type_once() -> None:
    text = render(Scrape())
    for name in prometheus.FAMILIES:
        assert text.count(f"# TYPE {name} ") == 1, name
        assert text.count(f"# HELP {name} ") == 1, name
    families(text)  # parses
