"""A captured signed body replayed under other delivery ids, and bodies too old to be news, do nothing."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import pytest
import redis
from flask.testing import FlaskClient
from rq import Queue

from app import create_app
from config import ConfigError, Settings, load_settings
from runnerguard.domain import freshness
from runnerguard.domain.freshness import DIGEST_SLACK, body_digest, canonical_delivery_id, check
from runnerguard.store import deliveries, delivery_index, keys, metrics
from runnerguard.web.state import state
from tests.helpers import ADMIN, SECRET, dumps, signed_headers

DELIVERIES_TOTAL = "runnerguard_webhook_deliveries_total"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_body(job_id: int, *, age_seconds: float = 60) -> bytes:
    when = iso(time.time() - age_seconds)
    return dumps({
        "action": "queued",
        "workflow_job": {"id": job_id, "run_id": 70, "run_attempt": 1, "labels": ["self-hosted", "linux"],
                         "created_at": when, "started_at": when, "status": "queued", "name": "build",
                         "workflow_name": "CI"},
        "repository": {"id": 1, "full_name": "octo/app"},
        "installation": {"id": 99},
    })


def post(client: FlaskClient, body: bytes, guid: str):  # type: ignore[no-untyped-def]
    return client.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job", guid=guid))


@pytest.fixture()
def default_settings(redis_url: str) -> Settings:
    """The settings a user gets: the 72 h age limit in force."""
    return load_settings({"GITHUB_WEBHOOK_SECRET": SECRET, "ADMIN_TOKEN": ADMIN, "REDIS_URL": redis_url})


def test_one_captured_body_replayed_under_new_ids_runs_once(client: FlaskClient, redis_client: redis.Redis) -> None:
    body = job_body(7)
    guid = str(uuid.uuid4())
    assert post(client, body, guid).status_code == 202
    variants = [guid, guid.upper(), guid.replace("-", ""), guid.replace("-", "").upper()]
    variants += [str(uuid.uuid4()) for _ in range(20)] + ["not-a-uuid-at-all"]
    for other in variants:
        again = post(client, body, other)
        assert (again.status_code, again.get_json()["status"]) == (200, "duplicate"), other
    assert Queue("events", connection=redis_client).count == 1
    assert delivery_index.count(redis_client) == 1
    assert metrics.value(redis_client, DELIVERIES_TOTAL, {"event": "workflow_job", "outcome": "duplicate"}) == 25


def test_github_redelivery_same_id_same_body_is_a_200_duplicate(client: FlaskClient) -> None:
    body = job_body(8)
    guid = str(uuid.uuid4())
    assert post(client, body, guid).status_code == 202
    assert post(client, body, guid).get_json() == {"status": "duplicate", "delivery": guid}


def test_delivery_ids_are_compared_and_stored_in_canonical_form(client: FlaskClient,
                                                               redis_client: redis.Redis) -> None:
    guid = str(uuid.uuid4())
    first = post(client, job_body(1), guid.upper().replace("-", ""))
    assert first.status_code == 202 and first.get_json()["delivery"] == guid
    assert deliveries.load(redis_client, guid) is not None
    # Another body under a spelling of the same id is the same delivery.
    assert post(client, job_body(2), guid.upper()).get_json()["status"] == "duplicate"
    assert post(client, job_body(3), "Sim-Delivery-1").status_code == 202
    assert post(client, job_body(4), "sim-delivery-1").get_json()["status"] == "duplicate"
    assert canonical_delivery_id("ABC-def") == "abc-def"
    assert canonical_delivery_id("0" * 31 + "A") == "00000000-0000-0000-0000-00000000000a"


def test_distinct_bodies_are_distinct_deliveries(client: FlaskClient, redis_client: redis.Redis) -> None:
    for n in range(5):
        assert post(client, job_body(100 + n), str(uuid.uuid4())).status_code == 202
    assert Queue("events", connection=redis_client).count == 5


def test_body_digest_is_kept_compactly_as_long_as_the_delivery(client: FlaskClient, settings: Settings,
                                                               redis_client: redis.Redis) -> None:
    # No age limit here (the `settings` fixture turns it off): nothing else refuses a replay, the digest stays.
    body = job_body(9)
    assert post(client, body, str(uuid.uuid4())).status_code == 202
    key = keys.delivery_body(body_digest(body))
    ttl = redis_client.ttl(key)
    assert settings.body_dedupe_seconds - 5 <= ttl <= settings.body_dedupe_seconds
    assert ttl >= settings.delivery_retention_seconds
    assert redis_client.memory_usage(key) <= 100  # bytes; the per-job budget is 2.5 KB
    assert len(body_digest(body)) == 32


def test_a_dated_body_keeps_its_digest_until_the_age_limit_refuses_it_anyway(
        default_settings: Settings, redis_client: redis.Redis) -> None:
    app = create_app(default_settings)
    client = app.test_client()
    body = job_body(21, age_seconds=70 * 3600)  # 2 h left before the 72 h limit
    assert post(client, body, str(uuid.uuid4())).status_code == 202
    # In the hash of the hour its newest timestamp falls in, which expires once every body of that hour is stale.
    dated = freshness.newest_job_time(json.loads(body))
    assert dated is not None
    hour = int(dated // 3600)
    bucket = keys.body_digests(hour)
    assert redis_client.hexists(bucket, bytes.fromhex(body_digest(body)))
    assert not redis_client.exists(keys.delivery_body(body_digest(body)))  # no key of its own
    expires = (hour + 1) * 3600 + default_settings.max_delivery_age_seconds + DIGEST_SLACK
    assert redis_client.expiretime(bucket) == expires
    assert expires - time.time() <= 3 * 3600 + DIGEST_SLACK  # hours, not the 14 days of the retention
    assert post(client, body, str(uuid.uuid4())).get_json()["status"] == "duplicate"
    # Bodies the age check cannot date, and other events, keep theirs for the whole retention.
    undated = dumps({"action": "queued", "workflow_job": {"id": 22}, "repository": {"id": 1, "full_name": "o/a"}})
    assert post(client, undated, str(uuid.uuid4())).status_code == 202
    ping = dumps({"zen": "Keep it logically awesome.", "hook_id": 5})
    headers = signed_headers(ping, "ping", guid=str(uuid.uuid4()))
    assert client.post("/webhooks/github", data=ping, headers=headers).status_code == 200
    for other in (undated, ping):
        ttl = redis_client.ttl(keys.delivery_body(body_digest(other)))
        assert default_settings.body_dedupe_seconds - 5 <= ttl <= default_settings.body_dedupe_seconds
    # Once the bucket has expired (deleted here, as its expiry would), the body is past the limit: still refused.
    redis_client.delete(bucket)
    with app.app_context():
        state().intake.clock = lambda: expires + 1
    answer = post(client, body, str(uuid.uuid4()))
    assert answer.status_code == 200 and answer.get_json()["reason"] == "stale"
    assert not redis_client.exists(bucket)


def test_a_body_whose_digest_an_older_release_kept_as_a_key_is_still_refused(
        default_settings: Settings, redis_client: redis.Redis) -> None:
    """Digests written before the hour buckets are keys of their own: the intake checks both."""
    client = create_app(default_settings).test_client()
    body = job_body(23, age_seconds=3600)
    redis_client.set(keys.delivery_body(body_digest(body)), 1, ex=3600)
    assert post(client, body, str(uuid.uuid4())).get_json()["status"] == "duplicate"
    assert redis_client.keys("rg:bodies:*") == []


def test_many_dated_bodies_of_one_hour_share_one_key(default_settings: Settings, redis_client: redis.Redis) -> None:
    client = create_app(default_settings).test_client()
    bodies = [job_body(300 + n, age_seconds=600) for n in range(40)]
    for body in bodies:
        assert post(client, body, str(uuid.uuid4())).status_code == 202
    buckets = redis_client.keys("rg:bodies:*")
    assert 1 <= len(buckets) <= 2  # the 40 bodies' timestamps may straddle an hour
    assert sum(redis_client.hlen(b) for b in buckets) == 40
    assert redis_client.keys("rg:body:*") == []
    for body in bodies[:5]:  # each still refused under a new id
        assert post(client, body, str(uuid.uuid4())).get_json()["status"] == "duplicate"


def test_a_body_dated_in_the_far_future_or_past_gets_no_long_lived_bucket() -> None:
    now = 1_800_000_000.0
    job = {"workflow_job": {"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 10 * 86400))}}
    future = freshness.assess("workflow_job", job, now=now, max_age_seconds=72 * 3600, keep_seconds=500)
    assert future.dated_hour is None and future.keep_seconds == 500 and not future.stale
    old = {"workflow_job": {"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 80 * 3600))}}
    past = freshness.assess("workflow_job", old, now=now, max_age_seconds=72 * 3600, keep_seconds=500)
    assert past.stale and past.dated_hour is None
    recent = {"workflow_job": {"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))}}
    fresh = freshness.assess("workflow_job", recent, now=now, max_age_seconds=72 * 3600, keep_seconds=500)
    assert fresh.dated_hour == int((now - 60) // 3600) and fresh.bucket_expires_at is not None
    assert fresh.bucket_expires_at > now + 72 * 3600


def test_digest_keep_times_from_the_age_check() -> None:
    now = 1_800_000_000.0
    def job(age: float) -> dict[str, object]:
        return {"workflow_job": {"created_at": iso(now - age)}}
    assert check("workflow_job", job(60), now=now, max_age_seconds=72 * 3600, keep_seconds=14 * 86400) == (
        False, 72 * 3600 - 60 + DIGEST_SLACK)
    assert check("workflow_job", job(73 * 3600), now=now, max_age_seconds=72 * 3600, keep_seconds=99) == (True, 99)
    assert check("workflow_job", job(73 * 3600), now=now, max_age_seconds=72 * 3600, keep_seconds=10**6) == (
        True, DIGEST_SLACK)
    assert check("workflow_job", job(-10**7), now=now, max_age_seconds=3600, keep_seconds=500) == (False, 500)
    assert check("workflow_job", job(60), now=now, max_age_seconds=0, keep_seconds=500) == (False, 500)
    assert check("workflow_job", {}, now=now, max_age_seconds=3600, keep_seconds=500) == (False, 500)
    assert check("ping", job(60), now=now, max_age_seconds=3600, keep_seconds=500) == (False, 500)


def test_body_digest_outlives_a_delivery_retention_shorter_than_the_age_limit(redis_url: str) -> None:
    short = load_settings({"GITHUB_WEBHOOK_SECRET": SECRET, "REDIS_URL": redis_url,
                           "RUNNERGUARD_DELIVERY_RETENTION_DAYS": "1"})
    assert short.body_dedupe_seconds == 72 * 3600


def test_workflow_job_older_than_the_limit_is_answered_200_and_ignored(default_settings: Settings,
                                                                       redis_client: redis.Redis) -> None:
    client = create_app(default_settings).test_client()
    old = job_body(10, age_seconds=73 * 3600)
    guid = str(uuid.uuid4())
    response = post(client, old, guid)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ignored", "reason": "stale", "delivery": guid}
    assert not deliveries.exists(redis_client, guid)
    assert Queue("events", connection=redis_client).count == 0
    assert metrics.value(redis_client, DELIVERIES_TOTAL, {"event": "workflow_job", "outcome": "stale"}) == 1
    # The newest timestamp counts: a job queued long ago that completed just now is news.
    completed = dumps({"action": "completed", "workflow_job": {
        "id": 11, "run_id": 70, "run_attempt": 1, "labels": ["linux"], "status": "completed",
        "created_at": iso(time.time() - 80 * 3600), "started_at": iso(time.time() - 79 * 3600),
        "completed_at": iso(time.time() - 60), "conclusion": "success", "name": "b", "workflow_name": "CI"},
        "repository": {"id": 1, "full_name": "octo/app"}})
    assert post(client, completed, str(uuid.uuid4())).status_code == 202
    assert post(client, job_body(12, age_seconds=71 * 3600), str(uuid.uuid4())).status_code == 202


def test_a_stale_body_asked_for_by_the_recovery_is_let_through(default_settings: Settings,
                                                               redis_client: redis.Redis) -> None:
    client = create_app(default_settings).test_client()
    old = job_body(13, age_seconds=80 * 3600)
    guid = str(uuid.uuid4())
    redis_client.set(keys.recovery_asked(guid), time.time(), ex=3600)  # what runnerguard/recovery.py records
    assert post(client, old, guid.upper()).status_code == 202
    assert deliveries.exists(redis_client, guid)
    # The same body under an id nobody asked for is a replay, and a stale one.
    assert post(client, job_body(14, age_seconds=80 * 3600), str(uuid.uuid4())).get_json()["reason"] == "stale"


def test_max_delivery_age_setting(redis_url: str) -> None:
    base = {"GITHUB_WEBHOOK_SECRET": SECRET, "REDIS_URL": redis_url}
    assert load_settings(base).max_delivery_age_hours == 72
    assert load_settings({**base, "RUNNERGUARD_MAX_DELIVERY_AGE_HOURS": "0"}).max_delivery_age_seconds == 0
    for bad in ("-1", "3d", "1.5"):
        with pytest.raises(ConfigError, match="RUNNERGUARD_MAX_DELIVERY_AGE_HOURS"):
            load_settings({**base, "RUNNERGUARD_MAX_DELIVERY_AGE_HOURS": bad})


def test_age_check_off_accepts_old_bodies(default_settings: Settings, redis_client: redis.Redis) -> None:
    client = create_app(default_settings.with_overrides(max_delivery_age_hours=0)).test_client()
    assert post(client, job_body(15, age_seconds=400 * 86400), str(uuid.uuid4())).status_code == 202


def test_a_delivery_still_costs_one_round_trip(client: FlaskClient, redis_client: redis.Redis) -> None:
    post(client, job_body(200), str(uuid.uuid4()))  # the script is loaded once per process
    redis_client.config_resetstat()
    for n in range(5):
        assert post(client, job_body(201 + n), str(uuid.uuid4())).status_code == 202
    stats = {name: int(row["calls"]) for name, row in redis_client.info("commandstats").items()
             if name.startswith("cmdstat_")}
    stats.pop("cmdstat_config", None)
    stats.pop("cmdstat_info", None)  # this very read
    top_level = {name: calls for name, calls in stats.items() if name in ("cmdstat_evalsha", "cmdstat_eval")}
    assert top_level == {"cmdstat_evalsha": 5}
    # The commands the script runs inside count too: one EXISTS per delivery checks the id and the body at once, one
    # more that the RQ job templates its jobs copy are there (store/rq_templates.py).
    assert stats["cmdstat_exists"] == 10
