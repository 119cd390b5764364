"""Cause records in one small hash a failed job: the same causes read back, the previous release's keys still read
(and its marker still guards), corrupted values fail with a clear error."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
import redis

from runnerguard.domain.events import parse_workflow_job
from runnerguard.store import cause_records, causes, jobstore, keys, metrics
from tests.test_causes_store import POOL, RULE, completed, upsert

FULL: dict[str, Any] = {
    "cause": "unknown", "evidence": "step 'Test' failed; nothing shows whether the runner or the code is at fault",
    "kind": "user step", "step": "Test", "person": False, "fork": False, "twin": None,
    "inputs": {"conclusion": "failure", "runner_name": "runner-07",
               "steps": [["Set up job", "completed", "success"], ["Build", "completed", "success"],
                         ["Test", "completed", "failure"], ["Post Run actions/checkout@v4", "completed", "skipped"]],
               "failed_step": "Test"},
    "digest": "a1d0116e284f9a660eaf7689",
}


def save(client: redis.Redis, record: dict[str, Any], data: dict[str, Any]) -> None:
    causes.save(client, record, data, rule=RULE, retention_seconds=86400, now=time.time())


def failed(client: redis.Redis, job_id: int) -> dict[str, Any]:
    return upsert(client, completed(job_id, "failure", time.time() - 60), time.time())


def test_a_cause_reads_back_exactly_from_a_small_listpack_hash(redis_client: redis.Redis) -> None:
    record = failed(redis_client, 1)
    save(redis_client, record, FULL)
    assert causes.load(redis_client, 3, 1) == FULL
    key = keys.job_causes(3, 1)
    assert redis_client.object("encoding", key) == b"listpack"
    assert all(len(v) <= cause_records.CHUNK for v in redis_client.hvals(key))  # type: ignore[union-attr]
    assert 0 < redis_client.ttl(key) <= cause_records.TTL
    assert not redis_client.exists(keys.job_cause(3, 1))  # no JSON string any more
    loaded = jobstore.load(redis_client, ["3:1"])[0]
    assert (loaded["failure_cause"], loaded["failure_evidence"], loaded["failure_step"]) == (
        "unknown", FULL["evidence"], "Test")


def test_unusual_steps_and_partial_records_read_back_too(redis_client: redis.Redis) -> None:
    record = failed(redis_client, 2)
    odd = {**FULL, "person": True, "twin": 99, "inputs": {
        **FULL["inputs"], "steps": [["Weird", "completed", "action_required"], ["Next", None, None]]}}
    save(redis_client, record, odd)
    assert causes.load(redis_client, 3, 2) == odd
    save(redis_client, record, {"cause": "runner", "evidence": "lost"})
    partial = causes.load(redis_client, 3, 2)
    assert partial is not None and (partial["cause"], partial["evidence"], partial["inputs"]) == ("runner", "lost", None)


def test_a_shorter_cause_drops_the_chunks_of_a_longer_one(redis_client: redis.Redis) -> None:
    record = failed(redis_client, 3)
    long = {**FULL, "inputs": {**FULL["inputs"], "steps": [[f"step {n} {'x' * n}", "completed", "success"]
                                                           for n in range(60)]}}
    save(redis_client, record, long)
    chunks_before = redis_client.hlen(keys.job_causes(3, 3))
    save(redis_client, record, FULL)
    assert causes.load(redis_client, 3, 3) == FULL
    assert redis_client.hlen(keys.job_causes(3, 3)) < chunks_before
    assert set(redis_client.hkeys(keys.job_causes(3, 3))) <= {b"n", b"m", b"h", b"0", b"1", b"2", b"3", b"4"}


def test_a_field_the_record_cannot_keep_is_refused_before_anything_is_written(redis_client: redis.Redis) -> None:
    record = failed(redis_client, 4)
    with pytest.raises(ValueError, match="no field colour"):
        save(redis_client, record, {**FULL, "colour": "red"})
    assert causes.load(redis_client, 3, 4) is None


# --- the previous release's layout ---------------------------------------------------------------------------------

def test_a_cause_written_by_the_previous_release_reads_and_counts(redis_client: redis.Redis) -> None:
    now = time.time()
    record = upsert(redis_client, completed(5, "failure", now - 60), now)
    assert jobstore.window_counts(redis_client, POOL, now - 86400) == (1, 1)
    # as the previous release wrote it: JSON in keys.job_cause (code: finished, not failed)
    old = {**FULL, "cause": "code", "kind": "code", "twin": 77}
    redis_client.set(keys.job_cause(3, 5), orjson.dumps(old), ex=cause_records.TTL)
    assert causes.load(redis_client, 3, 5) == old
    assert jobstore.load(redis_client, ["3:5"])[0]["failure_cause"] == "code"
    jobstore.reindex(redis_client, record, rule=RULE, retention_seconds=86400, now=now)
    assert jobstore.window_counts(redis_client, POOL, now - 86400) == (1, 0)
    # rewritten by this release: the hash holds it, the old string is gone
    save(redis_client, record, {**old, "cause": "runner", "kind": "lost"})
    assert causes.load(redis_client, 3, 5)["cause"] == "runner"  # type: ignore[index]
    assert not redis_client.exists(keys.job_cause(3, 5))
    assert jobstore.window_counts(redis_client, POOL, now - 86400) == (1, 1)


def test_the_previous_releases_marker_still_means_counted(redis_client: redis.Redis) -> None:
    now = time.time()
    hook = jobstore.upsert(redis_client, parse_workflow_job(completed(6, "failure", now - 60)), seen_at=now, pools=[POOL], rule=RULE,
                           retention_seconds=86400, now=now, failed_counted_later=True)
    redis_client.set(keys.cause_metered(3, 6), "1", ex=cause_records.TTL)  # counted by the previous release
    labels = {"pool": POOL, "repo": "octo/app", "conclusion": "failure", "cause": "runner"}
    assert not causes.meter_once(redis_client, hook, "runner")
    assert metrics.value(redis_client, "runnerguard_jobs_total", labels) == 0
    # without it, the new field is the marker: counted once
    redis_client.delete(keys.cause_metered(3, 6))
    assert causes.meter_once(redis_client, hook, "runner") and not causes.meter_once(redis_client, hook, "runner")
    assert redis_client.hget(keys.job_causes(3, 6), "m") == b"1"
    assert metrics.value(redis_client, "runnerguard_jobs_total", labels) == 1


def test_host_facts_of_both_layouts_read(redis_client: redis.Redis) -> None:
    redis_client.set(keys.job_host_fact(3, 7), orjson.dumps({"host": "old-1", "state": "up", "runner": None,
                                                             "disk_over": None}))
    assert causes.cached_host_fact(redis_client, 3, 7) == {"host": "old-1", "state": "up", "runner": None,
                                                           "disk_over": None}
    fact = {"host": "gpu-01", "state": "down", "runner": "offline", "disk_over": None}
    causes.save_host_fact(redis_client, 3, 8, fact)
    assert causes.cached_host_fact(redis_client, 3, 8) == {"host": "gpu-01", "state": "down", "runner": "offline"}
    assert redis_client.hexists(keys.job_causes(3, 8), "h") and not redis_client.exists(keys.job_host_fact(3, 8))
    causes.save_host_fact(redis_client, 3, 9, {})  # "no host known" is a fact too: it is not asked again
    assert causes.cached_host_fact(redis_client, 3, 9) == {} and causes.cached_host_fact(redis_client, 3, 99) is None
    long = {"host": "h" * 50, "state": "up", "runner": "busy", "disk_over": "/var/lib/docker"}
    causes.save_host_fact(redis_client, 3, 10, long)  # too long for a listpack value: its own key, as before
    assert causes.cached_host_fact(redis_client, 3, 10) == long
    assert redis_client.exists(keys.job_host_fact(3, 10))


def test_twins_of_both_layouts_read_and_new_ones_stay_listpacks(redis_client: redis.Redis) -> None:
    old = {"pools": ["mac"], "failed_step": "Test", "runner": "runner-10", "completed_ts": 1796096735.0}
    redis_client.hset(keys.twins(3, "d1"), "11", orjson.dumps(old))  # as the previous release wrote it
    new = {"pools": [], "failed_step": None, "runner": "ubuntu-latest", "completed_ts": 1796096800.0}
    causes.add_twin(redis_client, 3, "d1", 12, new)
    assert causes.twins_of(redis_client, 3, "d1") == {11: old, 12: new}
    causes.add_twin(redis_client, 3, "d2", 13, {**new, "completed_ts": 1796096800.25})
    assert causes.twins_of(redis_client, 3, "d2")[13]["completed_ts"] == 1796096800.25
    assert redis_client.object("encoding", keys.twins(3, "d2")) == b"listpack"


# --- corrupted values ----------------------------------------------------------------------------------------------

def test_a_corrupted_chunk_is_a_clear_error_not_a_wrong_cause(redis_client: redis.Redis) -> None:
    save(redis_client, failed(redis_client, 20), FULL)
    key = keys.job_causes(3, 20)
    chunk = bytearray(redis_client.hget(key, "1"))  # type: ignore[arg-type]
    chunk[5] ^= 0xFF
    redis_client.hset(key, "1", bytes(chunk))
    with pytest.raises(cause_records.CauseRecordError, match=r"rg:cause:j:3:20 is corrupted"):
        causes.load(redis_client, 3, 20)
    redis_client.hdel(key, "1")
    with pytest.raises(cause_records.CauseRecordError, match=r"chunk 1 of \d is missing"):
        jobstore.load(redis_client, ["3:20"])
    assert redis_client.hget(key, "0") is not None  # reading lost nothing


def test_corrupted_old_values_are_clear_errors(redis_client: redis.Redis) -> None:
    redis_client.set(keys.job_cause(3, 21), b"{not json")
    with pytest.raises(cause_records.CauseRecordError, match="rg:cause:3:21 is corrupted"):
        causes.load(redis_client, 3, 21)
    redis_client.set(keys.job_host_fact(3, 21), b"[1")
    with pytest.raises(cause_records.CauseRecordError, match="host fact of job 3:21 is corrupted"):
        causes.cached_host_fact(redis_client, 3, 21)
    redis_client.hset(keys.twins(3, "d3"), "5", b'["only two", null]')
    with pytest.raises(cause_records.CauseRecordError, match="twin b'5' of rg:cause:twins:3:d3 is corrupted"):
        causes.twins_of(redis_client, 3, "d3")
