"""The job indexes as sized for issue #18: what each reader gets, and what the previous release wrote still read."""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis

from runnerguard.domain.events import parse_workflow_job
from runnerguard.store import jobstore, keys
from runnerguard.store.body_codec import RECORD_ID, frame_dict_id
from runnerguard.store.deliveries import codec_for
from tests.test_timings import job_events

DAY = 86400


def record_job(client: redis.Redis, job_id: int, *, created: float, repo: str = "octo/app", repo_id: int = 3,
               conclusion: str = "success", pools: tuple[str, ...] = ("self-hosted",)) -> None:
    """A job's three deliveries through upsert, as the timeline task records them."""
    for event in job_events(job_id, conclusion, created=created, repo=repo, repo_id=repo_id):
        jobstore.upsert(client, parse_workflow_job(event), seen_at=created + 1, pools=list(pools),
                        rule=jobstore.CountingRule(), retention_seconds=30 * DAY, now=time.time())


def ids(records: list[dict[str, Any]]) -> list[int]:
    return [r["job_id"] for r in records]


def test_a_repository_has_no_index_of_its_own_and_find_still_picks_only_its_jobs(redis_client: redis.Redis) -> None:
    now = time.time()
    for n in range(30):  # interleaved: most jobs of the index belong to another repository
        record_job(redis_client, 100 + n, created=now - 3600 + n, repo="octo/busy", repo_id=4)
        if n % 10 == 0:
            record_job(redis_client, 500 + n, created=now - 3600 + n, repo="octo/App", repo_id=3)
    assert not redis_client.exists(keys.repo_created("octo/app"))
    assert ids(jobstore.find(redis_client, repo="octo/app")) == [520, 510, 500]  # newest first, any case
    assert ids(jobstore.find(redis_client, repo="OCTO/APP", limit=2)) == [520, 510]
    assert ids(jobstore.find(redis_client, repo="octo/app", since=now - 3600 + 5)) == [520, 510]
    assert ids(jobstore.find(redis_client, repo="octo/app", pool="self-hosted")) == [520, 510, 500]
    assert jobstore.find(redis_client, repo="octo/app", pool="other") == []
    assert len(jobstore.find(redis_client, repo="octo/busy")) == 30
    assert jobstore.find(redis_client, repo="octo/unknown") == []


def test_find_by_repo_pages_past_a_page_of_other_repositories(redis_client: redis.Redis) -> None:
    now = time.time()
    record_job(redis_client, 1, created=now - 7200, repo="octo/quiet", repo_id=9)
    # more members than one page of names, all newer than the quiet repository's one job
    pipe = redis_client.pipeline(transaction=False)
    pipe.zadd(keys.JOBS_BY_CREATED, {f"4:{n}": now - 3600 + n / 1000 for n in range(jobstore.REPO_SCAN_PAGE + 10)})
    pipe.execute()
    assert ids(jobstore.find(redis_client, repo="octo/quiet", limit=5)) == [1]


def test_a_renamed_or_recreated_repository_name_keeps_every_id_it_had(redis_client: redis.Redis) -> None:
    now = time.time()
    record_job(redis_client, 1, created=now - 300, repo="octo/app", repo_id=3)
    record_job(redis_client, 2, created=now - 200, repo="octo/app", repo_id=33)  # deleted, created again
    assert ids(jobstore.find(redis_client, repo="octo/app")) == [2, 1]


def test_jobs_the_previous_release_indexed_per_repository_are_still_found(redis_client: redis.Redis) -> None:
    """Before: a per-repo created index and no id set; the job index held the same members (both written)."""
    now = time.time()
    old = {"repo_id": 7, "repo": "octo/legacy", "job_id": 70, "pools": ["self-hosted"], "snapshots": {}}
    record = {**old, "created_ts": now - 900, "started_ts": None, "completed_ts": None, "status": "queued"}
    redis_client.set(keys.job(7, 70), orjson.dumps(record))  # plain JSON, as before compression
    redis_client.zadd(keys.repo_created("octo/legacy"), {"7:70": now - 900})
    redis_client.zadd(keys.JOBS_BY_CREATED, {"7:70": now - 900})
    assert ids(jobstore.find(redis_client, repo="octo/legacy")) == [70]
    # and a job recorded now beside it is found with it
    record_job(redis_client, 71, created=now - 100, repo="octo/legacy", repo_id=7)
    assert ids(jobstore.find(redis_client, repo="octo/legacy")) == [71, 70]
    # the old index ages out through the periodic trim; the job index keeps both until they do too
    assert jobstore.trim_indexes(redis_client, retention_seconds=600, now=now) >= 2
    assert not redis_client.exists(keys.repo_created("octo/legacy"))
    assert ids(jobstore.find(redis_client, repo="octo/legacy")) == [71]


def test_a_record_stores_no_derived_field_and_reads_back_whole(redis_client: redis.Redis) -> None:
    now = time.time()
    record_job(redis_client, 42, created=now - 3600, conclusion="failure")
    raw = redis_client.get(keys.job(3, 42))
    assert raw is not None
    stored = orjson.loads(codec_for(redis_client).decompress(frame_dict_id(raw), raw))
    assert set(stored) == set(jobstore.STORED_FIELDS)
    record = jobstore.decode(redis_client, raw)
    assert record["conclusion"] == "failure" and record["queue_seconds"] == 60.0 and record["run_seconds"] == 540.0
    assert record["pools"] == ["self-hosted"] and record["created_ts"] == float(int(now - 3600))
    # the previous release's frame (the whole record) and plain JSON decode to the same record
    whole = codec_for(redis_client).compress(orjson.dumps(record), dict_id=RECORD_ID)[1]
    assert jobstore.decode(redis_client, whole) == record
    assert jobstore.decode(redis_client, orjson.dumps(record)) == record
    # and a record read back that way merges with a new delivery as before
    redis_client.set(keys.job(3, 42), whole)
    record_job(redis_client, 42, created=now - 3600, conclusion="failure")
    assert jobstore.find(redis_client, repo="octo/app")[0]["conclusion"] == "failure"


def test_a_pool_job_is_in_its_pool_index_only_and_every_reader_of_all_jobs_merges_them(
        redis_client: redis.Redis) -> None:
    now = float(int(time.time()))  # GitHub's times are whole seconds
    record_job(redis_client, 1, created=now - 500, pools=("linux",))
    record_job(redis_client, 2, created=now - 400, pools=())  # no pool: a hosted job
    record_job(redis_client, 3, created=now - 300, pools=("linux", "gpu"))  # two pools: given once
    record_job(redis_client, 4, created=now - 300, pools=("gpu",))  # same created time as job 3
    # the previous release's entry of a pool job in the job index, beside its pool entry
    redis_client.zadd(keys.JOBS_BY_CREATED, {"3:1": now - 500})
    assert [m.decode() for m in redis_client.zrange(keys.JOBS_BY_CREATED, 0, -1)] == ["3:1", "3:2"]
    assert list(jobstore.created_since(redis_client, 0)) == ["3:1", "3:2", "3:3", "3:4"]
    assert list(jobstore.created_since(redis_client, now - 400)) == ["3:2", "3:3", "3:4"]
    assert sorted(ids(jobstore.find(redis_client))[:2]) == [3, 4] and ids(jobstore.find(redis_client))[2:] == [2, 1]
    assert len(jobstore.find(redis_client, limit=3)) == 3
    assert ids(jobstore.find(redis_client, since=now - 400, limit=10))[2:] == [2]
    assert ids(jobstore.find(redis_client, pool="gpu")) in ([4, 3], [3, 4])
    assert ids(jobstore.find(redis_client, repo="octo/app", since=now - 450)) in ([4, 3, 2], [3, 4, 2])


def test_the_export_pages_through_more_jobs_than_a_page(redis_client: redis.Redis) -> None:
    now = time.time()
    members = {f"3:{n}": now - 3600 + n for n in range(jobstore.EXPORT_PAGE * 2 + 5)}
    redis_client.zadd(keys.pool_created("linux"), members)
    redis_client.sadd(keys.POOLS_SEEN, "linux")
    redis_client.zadd(keys.JOBS_BY_CREATED, {"9:1": now - 1800.5})
    out = list(jobstore.created_since(redis_client, 0))
    assert len(out) == len(members) + 1 and len(set(out)) == len(out)
    assert out.index("9:1") == 1800  # in created order among the pool's jobs (1,800 are older)
