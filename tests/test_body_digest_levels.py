"""A busy hour's body-dedupe digests spill over more hashes so each stays a compact listpack, and still guard."""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from datetime import UTC, datetime

import pytest
import redis
from flask.testing import FlaskClient
from rq import Queue

from app import create_app
from config import Settings, load_settings
from runnerguard.domain.freshness import DIGEST_SLACK, body_digest
from runnerguard.store import atomic, deliveries, keys
from runnerguard.store.atomic import ConditionalExecutor, new_batch
from runnerguard.store.deliveries import DIGESTS_PER_HASH, DUPLICATE, NEW, Recorder
from tests.helpers import ADMIN, SECRET, dumps, signed_headers

HOUR = math.floor(time.time() / 3600) - 1  # an hour ago: dated bodies of it are fresh for the 72 h limit
EXPIRES = (HOUR + 1) * 3600 + 72 * 3600 + DIGEST_SLACK


def digest(n: int, prefix: str = "") -> str:
    """A 16-byte hex digest, starting with `prefix` (to fill one level-1 or level-2 hash on purpose)."""
    return (prefix + hashlib.sha256(str(n).encode()).hexdigest())[:32]


def old_remember_body(client: redis.Redis, hex_digest: str, hour: int, expires_at: int) -> None:
    """What the release before the spill levels wrote for a dated body (frozen copy of its remember_body)."""
    bucket = keys.body_digests(hour)
    client.hset(bucket, bytes.fromhex(hex_digest), b"")
    client.expireat(bucket, expires_at)


def remember(recorder: Recorder, hex_digest: str, hour: int = HOUR) -> str:
    """The intake's guarded call for one dated body, through the store API: NEW or DUPLICATE."""
    main, duplicate = recorder.batch(), recorder.batch()
    deliveries.remember_body(main, hex_digest, ttl_seconds=999, dated_hour=hour, bucket_expires_at=EXPIRES)
    main.incr("test:applied")
    duplicate.incr("test:duplicates")
    return recorder.record_if_unseen(str(uuid.uuid4()), hex_digest, main, duplicate, dated_hour=hour)


def level_keys(client: redis.Redis, hour: int = HOUR) -> list[bytes]:
    return sorted(client.keys(f"{keys.body_digests(hour)}*"))


def holder(client: redis.Redis, hex_digest: str, hour: int = HOUR) -> str:
    """The one level key holding this digest."""
    found = [k for k in keys.body_digest_levels(hour, hex_digest) if client.hexists(k, bytes.fromhex(hex_digest))]
    assert len(found) == 1, found
    return found[0]


def test_levels_fill_in_order(redis_client: redis.Redis) -> None:
    recorder = Recorder(redis_client)
    level0 = keys.body_digests(HOUR)
    for n in range(DIGESTS_PER_HASH):
        assert remember(recorder, digest(n)) == NEW
    assert redis_client.hlen(level0) == DIGESTS_PER_HASH and level_keys(redis_client) == [level0.encode()]
    # The next goes to the level-1 hash of its first hex digit, and is found there.
    spilled = digest(10_000, "a")
    assert remember(recorder, spilled) == NEW
    assert holder(redis_client, spilled) == f"{level0}:a"
    assert remember(recorder, spilled) == DUPLICATE
    # Level 1 "a" full: the next "a" digest goes to level 2 ("ab"), another letter still has room at level 1.
    for n in range(DIGESTS_PER_HASH - 1):
        assert remember(recorder, digest(20_000 + n, "a")) == NEW
    assert redis_client.hlen(f"{level0}:a") == DIGESTS_PER_HASH
    deep = digest(30_000, "ab")
    assert remember(recorder, deep) == NEW
    assert holder(redis_client, deep) == f"{level0}:ab"
    assert remember(recorder, digest(30_001, "c")) == NEW
    assert holder(redis_client, digest(30_001, "c")) == f"{level0}:c"
    # Every level found by the guard, every write applied once, every duplicate refused.
    for old in (digest(0), digest(DIGESTS_PER_HASH - 1), spilled, deep):
        assert remember(recorder, old) == DUPLICATE
    assert int(redis_client.get("test:applied") or 0) == 2 * DIGESTS_PER_HASH + 2
    assert int(redis_client.get("test:duplicates") or 0) == 5
    for key in level_keys(redis_client):
        assert redis_client.expiretime(key) == EXPIRES, key


def test_level_two_takes_a_digest_even_when_full(redis_client: redis.Redis) -> None:
    """Past ~35 k digests an hour the level-2 hashes grow beyond a listpack: bigger, never a missed duplicate."""
    recorder = Recorder(redis_client)
    for n in range(DIGESTS_PER_HASH):
        old_remember_body(redis_client, digest(n), HOUR, EXPIRES)
    base = keys.body_digests(HOUR)
    for prefix in ("f", "ff"):  # level 1 "f" and level 2 "ff" full
        redis_client.hset(f"{base}:{prefix}", mapping={bytes.fromhex(digest(900 + n, prefix)): b""
                                                       for n in range(DIGESTS_PER_HASH)})
    last = digest(5, "ff")
    assert remember(recorder, last) == NEW
    assert redis_client.hlen(f"{base}:ff") == DIGESTS_PER_HASH + 1 and holder(redis_client, last) == f"{base}:ff"
    assert remember(recorder, last) == DUPLICATE


def test_a_full_level_is_still_a_listpack_in_a_default_redis(redis_client: redis.Redis) -> None:
    assert int(redis_client.config_get("hash-max-listpack-entries")["hash-max-listpack-entries"]) >= DIGESTS_PER_HASH
    for n in range(DIGESTS_PER_HASH):
        old_remember_body(redis_client, digest(n), HOUR, EXPIRES)
    assert redis_client.object("encoding", keys.body_digests(HOUR)) == b"listpack"


def test_10000_digests_of_one_hour_are_all_listpacks_and_small(redis_client: redis.Redis) -> None:
    """~240 k deliveries a day: every level in use (levels 0 and 1 take 17 * 256), every hash a listpack."""
    recorder = Recorder(redis_client)
    written = [digest(n) for n in range(10_000)]
    for one in written:
        assert remember(recorder, one) == NEW
    names = level_keys(redis_client)
    assert 1 + 16 + 200 < len(names) <= 1 + 16 + 256
    assert sum(redis_client.hlen(k) for k in names) == 10_000
    for key in names:
        assert redis_client.object("encoding", key) == b"listpack", key
        assert redis_client.expiretime(key) == EXPIRES, key
    per_digest = sum(int(redis_client.memory_usage(k, samples=0) or 0) for k in names) / 10_000
    assert per_digest <= 26, per_digest  # ~24 B with the keys' own cost; one hashtable of 10,000 is ~75 B a digest
    for one in written[::97]:
        assert remember(recorder, one) == DUPLICATE


def test_digests_the_previous_release_wrote_still_guard(redis_client: redis.Redis) -> None:
    """Level 0 is the previous release's hash: its digests guard, even when it grew past a listpack there."""
    recorder = Recorder(redis_client)
    old = [digest(n) for n in range(600)]  # the old code wrote every digest of the hour into level 0
    for one in old:
        old_remember_body(redis_client, one, HOUR, EXPIRES)
    assert redis_client.object("encoding", keys.body_digests(HOUR)) == b"hashtable"
    for one in old[::13]:
        assert remember(recorder, one) == DUPLICATE
    new = digest(7, "5")
    assert remember(recorder, new) == NEW  # level 0 is full: the new digest spills at once
    assert holder(redis_client, new) == f"{keys.body_digests(HOUR)}:5"
    assert redis_client.hlen(keys.body_digests(HOUR)) == 600
    assert redis_client.get("test:applied") == b"1"


def test_the_replicated_path_spills_and_guards_too(redis_client: redis.Redis) -> None:
    """execute_if_new_replicated (RUNNERGUARD_REDIS_MIN_REPLICAS): the same script, then WAIT, in one round trip."""
    executor = ConditionalExecutor(redis_client)
    for n in range(DIGESTS_PER_HASH):
        old_remember_body(redis_client, digest(n), HOUR, EXPIRES)

    def call(hex_digest: str) -> int:
        main, duplicate = new_batch(redis_client), new_batch(redis_client)
        deliveries.remember_body(main, hex_digest, ttl_seconds=9, dated_hour=HOUR, bucket_expires_at=EXPIRES)
        guard = (keys.body_digest_levels(HOUR, hex_digest), bytes.fromhex(hex_digest))
        outcome, _acked = executor.execute_if_new_replicated(
            ["test:none"], main, duplicate, replicas=0, timeout_ms=10, guard_field=guard)
        return outcome

    spilled = digest(1, "e")
    assert call(spilled) == atomic.APPLIED
    assert holder(redis_client, spilled) == f"{keys.body_digests(HOUR)}:e"
    assert call(spilled) == atomic.DUPLICATE
    assert call(digest(3)) == atomic.DUPLICATE  # level 0, as the previous release wrote it


def test_bad_digests_and_guards_are_refused_before_anything_is_written(redis_client: redis.Redis) -> None:
    batch = new_batch(redis_client)
    for bad in ("zz" * 16, "ab" * 8, "abc"):
        with pytest.raises(ValueError):
            deliveries.remember_body(batch, bad, ttl_seconds=9, dated_hour=HOUR, bucket_expires_at=EXPIRES)
    assert batch.command_stack == []
    executor = ConditionalExecutor(redis_client)
    for bad_guard in (("rg:bodies:1", b"x"), ((), b"x"), (("rg:bodies:1",), b"")):
        with pytest.raises(ValueError, match="guard field"):
            executor.execute_if_new(["test:none"], batch, batch, guard_field=bad_guard)  # type: ignore[arg-type]
    assert redis_client.keys("*") == []


# --- through the real intake --------------------------------------------------------------------------------------


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dated_body(job_id: int, when: float) -> bytes:
    return dumps({
        "action": "queued",
        "workflow_job": {"id": job_id, "run_id": 70, "run_attempt": 1, "labels": ["self-hosted", "linux"],
                         "created_at": iso(when), "status": "queued", "name": "build", "workflow_name": "CI"},
        "repository": {"id": 1, "full_name": "octo/app"},
        "installation": {"id": 99},
    })


def post(client: FlaskClient, body: bytes, guid: str | None = None):  # type: ignore[no-untyped-def]
    return client.post("/webhooks/github", data=body,
                       headers=signed_headers(body, "workflow_job", guid=guid or str(uuid.uuid4())))


@pytest.fixture()
def default_settings(redis_url: str) -> Settings:
    """The settings a user gets: the 72 h age limit in force."""
    return load_settings({"GITHUB_WEBHOOK_SECRET": SECRET, "ADMIN_TOKEN": ADMIN, "REDIS_URL": redis_url})


def test_a_busy_hour_through_the_intake(default_settings: Settings, redis_client: redis.Redis) -> None:
    client = create_app(default_settings).test_client()
    when = HOUR * 3600 + 600
    old = dated_body(1, when)  # recorded by the previous release, with 223 more of the hour
    old_remember_body(redis_client, body_digest(old), HOUR, EXPIRES)
    for n in range(223):
        old_remember_body(redis_client, digest(n), HOUR, EXPIRES)
    bodies = [dated_body(100 + n, when) for n in range(100)]  # 32 fill level 0, 68 spill
    for body in bodies:
        assert post(client, body).status_code == 202
    names = level_keys(redis_client)
    assert sum(redis_client.hlen(k) for k in names) == 324
    assert redis_client.hlen(keys.body_digests(HOUR)) == DIGESTS_PER_HASH and len(names) > 1
    assert all(redis_client.object("encoding", k) == b"listpack" for k in names)
    assert all(redis_client.expiretime(k) == EXPIRES for k in names)
    assert redis_client.keys("rg:body:*") == []
    # A replay of any of them under a new id is a duplicate, whichever level holds its digest.
    spilled = [b for b in bodies if holder(redis_client, body_digest(b)) != keys.body_digests(HOUR)]
    assert len(spilled) == 324 - DIGESTS_PER_HASH
    for body in [old, bodies[0], *spilled[::10], spilled[-1]]:
        answer = post(client, body)
        assert (answer.status_code, answer.get_json()["status"]) == (200, "duplicate")
    assert Queue("events", connection=redis_client).count == 100


def test_a_spilled_digest_is_written_once_when_redis_lost_the_job_templates(
        default_settings: Settings, redis_client: redis.Redis) -> None:
    """The NOTEMPLATE retry: the first call wrote nothing, the second writes the digest at the level with room."""
    client = create_app(default_settings).test_client()
    when = HOUR * 3600 + 900
    assert post(client, dated_body(500, when)).status_code == 202  # the web process saved the templates
    for n in range(DIGESTS_PER_HASH - 1):
        old_remember_body(redis_client, digest(n), HOUR, EXPIRES)
    redis_client.delete(*redis_client.keys(keys.rq_job_template("*")))
    body = dated_body(999, when)
    assert post(client, body).status_code == 202
    assert redis_client.keys(keys.rq_job_template("*"))  # restored by the web process
    assert sum(redis_client.hlen(k) for k in level_keys(redis_client)) == DIGESTS_PER_HASH + 1
    assert holder(redis_client, body_digest(body)) == f"{keys.body_digests(HOUR)}:{body_digest(body)[0]}"
    assert post(client, body).get_json()["status"] == "duplicate"


def test_a_body_dated_far_ahead_keeps_a_key_of_its_own(default_settings: Settings,
                                                       redis_client: redis.Redis) -> None:
    client = create_app(default_settings).test_client()
    body = dated_body(77, time.time() + 10 * 86400)
    assert post(client, body).status_code == 202
    assert redis_client.keys("rg:bodies:*") == []
    assert 0 < redis_client.ttl(keys.delivery_body(body_digest(body))) <= default_settings.body_dedupe_seconds
    assert post(client, body).get_json()["status"] == "duplicate"
