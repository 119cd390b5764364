"""Delivery format v2 and the hourly time index (issue #18): round trips, older formats, bad data, order, expiry."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
import redis
import zstandard
from flask.testing import FlaskClient

from devtools.payloads import PayloadFactory
from runnerguard.store import body_codec, deliveries, delivery_index, delivery_query, keys
from runnerguard.store.body_codec import BodyCodec, BodyError
from runnerguard.store.deliveries import Delivery
from runnerguard.store.delivery_query import DeliveryFilter
from tests import legacy_v0, legacy_v1
from tests.helpers import admin_headers

HOUR = 3600
RETENTION = 14 * 86400


def body(n: int = 0) -> bytes:
    return next(iter(PayloadFactory(seed=30 + n).job(600 + n, time.time())))[1]


def store(client: redis.Redis, delivery: Delivery) -> None:
    pipe = client.pipeline(transaction=True)
    deliveries.record(pipe, delivery)
    pipe.execute()


def sample(guid: str, at: float, **changes: object) -> Delivery:
    fields: dict[str, object] = dict(guid=guid, event="workflow_job", body=body(), received_at=at, action="queued",
                                     hook_id="420000001", target_type="integration", target_id="1000001",
                                     installation_id=99, repo="octo/app", tasks=("timings", "prewarm@prewarm.host-1"))
    return Delivery(**{**fields, **changes})  # type: ignore[arg-type]


def test_v2_gives_back_every_field_exactly_and_stores_only_tasks_and_the_frame(redis_client: redis.Redis) -> None:
    guid = str(uuid.uuid4())
    odd = sample(guid, 1796148844.835044, repo='o/"quoted"\nnew line', body=b'{"a": 1}\n\n{"not": "json"}\n')
    store(redis_client, odd)
    assert deliveries.load(redis_client, guid) == odd
    raw = redis_client.hgetall(keys.delivery(guid))
    chunks = sorted(int(name) for name in raw if name != b"tasks")
    assert chunks == list(range(len(chunks))) and all(len(raw[str(n).encode()]) <= 63 for n in chunks)
    assert redis_client.object("encoding", keys.delivery(guid)) == b"listpack"
    bare = Delivery(guid="bare-1", event="ping", body=b"{}", received_at=5.0)  # no optional field, no task
    store(redis_client, bare)
    assert deliveries.load(redis_client, "bare-1") == bare
    assert deliveries.exists(redis_client, "bare-1") and not deliveries.exists(redis_client, "bare-2")


def test_a_v2_delivery_with_its_tasks_done_costs_100_bytes_less_than_v1(redis_client: redis.Redis) -> None:
    sizes = []
    for n, (_action, raw_body) in enumerate(PayloadFactory(seed=5).job(77, time.time())):
        v1, v2 = str(uuid.uuid4()), str(uuid.uuid4())
        legacy_v1.record(redis_client, sample(v1, time.time(), body=raw_body, tasks=("timings", "rollback")),
                         retention_seconds=RETENTION)
        store(redis_client, sample(v2, time.time(), body=raw_body, tasks=("timings", "rollback")))
        for task in ("timings", "rollback"):
            legacy_v1.mark_task(redis_client, v1, task, deliveries.DONE, now=time.time() + n)
            deliveries.mark_task(redis_client, v2, task, deliveries.DONE, now=time.time() + n)
        sizes.append(tuple(redis_client.memory_usage(keys.delivery(g), samples=0) for g in (v1, v2)))
    assert all(new <= old - 100 for old, new in sizes), sizes  # bench/bench_memory.py measures the whole mix


def test_done_marks_are_compact_and_every_run_is_kept(redis_client: redis.Redis) -> None:
    store(redis_client, sample("marks-1", 1000.0))
    deliveries.mark_task(redis_client, "marks-1", "timings", deliveries.FAILED, error="Boom:\ttab", now=1000.5 + 1 / 7)
    deliveries.mark_task(redis_client, "marks-1", "timings", deliveries.DONE, now=1001.25)
    deliveries.mark_task(redis_client, "marks-1", "timings", deliveries.DONE, now=1002.5)  # ran twice: both kept
    deliveries.mark_task(redis_client, "marks-1", "prewarm@prewarm.host-1", deliveries.DONE, now=1003.0)
    assert deliveries.attempts(redis_client, "marks-1") == [
        {"task": "timings", "state": "failed", "at": 1000.5 + 1 / 7, "error": "Boom:\ttab"},
        {"task": "timings", "state": "done", "at": 1001.25, "error": None},
        {"task": "timings", "state": "done", "at": 1002.5, "error": None},
        {"task": "prewarm@prewarm.host-1", "state": "done", "at": 1003.0, "error": None}]
    raw = redis_client.hgetall(keys.delivery("marks-1"))
    assert not any(name.startswith(b"task:") for name in raw)  # a done task's state is its mark (test_task_states)
    assert sum(1 for name in raw if name.startswith(b"@")) == 3
    assert deliveries.load(redis_client, "marks-1").state == deliveries.DONE  # type: ignore[union-attr]


def test_v0_v1_and_v2_records_side_by_side_read_list_mark_and_reset_alike(
        client: FlaskClient, redis_client: redis.Redis) -> None:
    now = time.time()
    old0 = sample("v0-1", now - 3 * HOUR, tasks=("timings",))
    old1 = sample("v1-1", now - 2 * HOUR, tasks=("timings",), body=body(1))
    new2 = sample("v2-1", now - HOUR, tasks=("timings",), body=body(2))
    legacy_v0.record(redis_client, old0, retention_seconds=RETENTION)
    legacy_v1.record(redis_client, old1, retention_seconds=RETENTION)
    legacy_v1.mark_task(redis_client, "v1-1", "timings", "failed", error="boom", now=now - 2 * HOUR + 1)
    store(redis_client, new2)
    assert deliveries.load(redis_client, "v0-1") == old0
    assert deliveries.load(redis_client, "v1-1") == Delivery(**{**old1.__dict__,
                                                               "task_states": {"timings": "failed: boom"}})
    assert deliveries.load(redis_client, "v2-1") == new2
    for guid in ("v0-1", "v1-1", "v2-1"):
        deliveries.mark_task(redis_client, guid, "timings", deliveries.DONE, now=now)
        assert deliveries.load(redis_client, guid).state == deliveries.DONE  # type: ignore[union-attr]
    assert [a["state"] for a in deliveries.attempts(redis_client, "v1-1")] == ["failed", "done"]
    listed = client.get("/api/deliveries", headers=admin_headers()).get_json()
    assert [d["guid"] for d in listed["deliveries"]] == ["v0-1", "v1-1", "v2-1"]  # legacy zset and buckets, merged
    for guid in ("v0-1", "v1-1", "v2-1"):
        pipe = redis_client.pipeline(transaction=True)
        deliveries.reset_tasks(pipe, guid, ["timings", "rollback"])
        pipe.execute()
        again = deliveries.load(redis_client, guid)
        assert again is not None and again.tasks == ("timings", "rollback") and again.state == deliveries.QUEUED


def test_load_many_reads_every_format_in_one_round_trip_as_load_does(redis_client: redis.Redis) -> None:
    now = time.time()
    legacy_v0.record(redis_client, sample("m0", now - 30, tasks=("timings",)), retention_seconds=RETENTION)
    legacy_v1.record(redis_client, sample("m1", now - 20, body=body(1)), retention_seconds=RETENTION)
    store(redis_client, sample("m2", now - 10, body=body(2)))
    guids = ["m2", "gone", "m0", "m1"]
    redis_client.config_resetstat()
    many = deliveries.load_many(redis_client, guids)
    stats = redis_client.info("commandstats")
    assert stats["cmdstat_hgetall"]["calls"] == 4  # one per delivery, all in one pipeline
    assert many == [deliveries.load(redis_client, g) for g in guids]
    assert many[1] is None and [d.guid for d in delivery_query.load_many(redis_client, guids)] == ["m2", "m0", "m1"]
    assert deliveries.load_many(redis_client, []) == []


def test_an_unreadable_attempt_field_names_itself(redis_client: redis.Redis) -> None:
    store(redis_client, sample("att-bad", 1000.0))
    for name in ("@not base 36!:timings", "@nocolon", "attempt:noon:timings"):
        redis_client.hset(keys.delivery("att-bad"), name, "")
        with pytest.raises(BodyError, match=r"att-bad: attempt field .* is corrupted"):
            deliveries.attempts(redis_client, "att-bad")
        redis_client.hdel(keys.delivery("att-bad"), name)
    assert deliveries.attempts(redis_client, "att-bad") == []


def _write_v2(client: redis.Redis, guid: str, content: bytes, *, tasks: bytes = b"[]") -> None:
    _dict_id, frame = BodyCodec().compress(content)
    client.hset(keys.delivery(guid), mapping={"tasks": tasks, **{str(n): frame[i:i + 63] for n, i in
                                                                  enumerate(range(0, len(frame), 63))}})


META = orjson.dumps([2, "workflow_job", "queued", None, None, None, None, "octo/app", 1.5])


@pytest.mark.parametrize(("damage", "message"), [
    ("flip", "stored body is corrupted"), ("truncate", "stored body is corrupted"),
    ("not-zstd", "not a zstd frame"), ("meta-not-json", "stored metadata is corrupted"),
    ("meta-version", "stored metadata is corrupted"), ("meta-short", "stored metadata is corrupted"),
    ("meta-types", "stored metadata is corrupted"),
    ("tasks", "stored metadata is corrupted"),
])
def test_bad_v2_data_is_refused_with_the_reason_never_returned_wrong(
        redis_client: redis.Redis, damage: str, message: str) -> None:
    content = META + b"\n" + body()
    if damage == "meta-not-json":
        content = b"{nope\n" + body()
    elif damage == "meta-version":
        content = META.replace(b"[2,", b"[3,") + b"\n" + body()
    elif damage == "meta-types":
        content = META.replace(b'"octo/app"', b"{}") + b"\n" + body()
    elif damage == "meta-short":
        content = b'[2,"ping"]\n{}'
    _write_v2(redis_client, "bad-2", content, tasks=b"{{" if damage == "tasks" else b"[]")
    key = keys.delivery("bad-2")
    if damage == "flip":
        chunk = redis_client.hget(key, "1")
        redis_client.hset(key, "1", chunk[:5] + bytes([chunk[5] ^ 0x01]) + chunk[6:])  # type: ignore[index]
    elif damage == "truncate":
        redis_client.hdel(key, str(int(redis_client.hlen(key)) - 2))  # the last chunk
    elif damage == "not-zstd":
        redis_client.hset(key, "0", b"{" + redis_client.hget(key, "0")[1:])  # type: ignore[index]
    with pytest.raises(BodyError, match=f"bad-2: .*{message}"):
        deliveries.load(redis_client, "bad-2")


def test_a_v2_frame_of_a_dictionary_this_install_lacks_fails_with_its_id(redis_client: redis.Redis) -> None:
    samples = [b for i in range(40) for _a, b in PayloadFactory(seed=i).job(i, 1.0)]
    foreign = zstandard.ZstdCompressionDict(body_codec.train(samples, dict_id=0x52479998))
    frame = zstandard.ZstdCompressor(dict_data=foreign).compress(META + b"\n" + samples[0])
    redis_client.hset(keys.delivery("foreign-2"), mapping={"tasks": b"[]", **{
        str(n): frame[i:i + 63] for n, i in enumerate(range(0, len(frame), 63))}})
    deliveries.codec_for.forget()
    with pytest.raises(BodyError, match=f"foreign-2: .*dictionary {0x52479998}.*does not have"):
        deliveries.load(redis_client, "foreign-2")


def test_the_index_lists_in_time_order_across_hours_and_the_legacy_zset_a_page_at_a_time(
        redis_client: redis.Redis) -> None:
    base = (int(time.time()) // HOUR - 5) * HOUR
    times = {"a": base + 10.0, "b": base + HOUR - 0.001, "c": base + HOUR, "d": base + HOUR,  # c, d: equal times
             "e": base + 3 * HOUR + 7, "f": base + 3 * HOUR + 1}  # f recorded after e, received before
    for guid, at in times.items():
        store(redis_client, sample(guid, at, tasks=()))
    legacy_v1.record(redis_client, sample("old", base + HOUR + 5, tasks=()), retention_seconds=RETENTION)
    expected = sorted([*times, "old"], key=lambda g: (times.get(g, base + HOUR + 5), g))
    assert expected == ["a", "b", "c", "d", "old", "f", "e"]
    assert [g for _at, g in delivery_index.entries(redis_client)] == expected
    seen, cursor = [], None
    while True:
        items, cursor = delivery_query.page(redis_client, DeliveryFilter(), cursor=cursor, limit=2)
        seen += [d.guid for d in items]
        if cursor is None:
            break
    assert seen == expected
    window = DeliveryFilter(since=base + HOUR - 0.001, until=base + HOUR + 5)
    assert [d.guid for d in delivery_query.scan(redis_client, window)] == ["b", "c", "d", "old"]
    assert [d.guid for d in delivery_query.latest(redis_client, 3)] == ["e", "f", "old"]
    assert delivery_index.count(redis_client) == 7


def test_trim_deletes_the_deliveries_of_each_hour_past_retention_with_its_list(redis_client: redis.Redis) -> None:
    now = time.time()
    hour = int(now // HOUR)
    recent = str(uuid.uuid4())
    store(redis_client, sample(recent, now, tasks=()))
    # neither a delivery nor its hour's list expires by itself: the trim is what deletes them, both or neither
    assert redis_client.ttl(keys.delivery(recent)) == -1 and redis_client.ttl(keys.delivery_bucket(hour)) == -1
    old = now - 30 * 86400
    store(redis_client, sample("old-1", old, tasks=()))
    store(redis_client, sample("0b38dc21-cdc4-4168-afcc-eb4645325590", old + 1, tasks=()))
    edge = now - RETENTION  # at the cutoff: its hour ends after it, so the hour is kept whole until it is past
    store(redis_client, sample("edge-1", edge, tasks=()))
    redis_client.zadd(keys.DELIVERIES_BY_TIME, {"older-1": old})  # an entry of the previous release
    assert deliveries.trim(redis_client, retention_seconds=RETENTION, now=now) == 3
    assert not redis_client.exists(keys.delivery("old-1"), keys.delivery("0b38dc21-cdc4-4168-afcc-eb4645325590"))
    assert not redis_client.exists(keys.delivery_bucket(int(old // HOUR)))
    assert deliveries.exists(redis_client, recent) and deliveries.exists(redis_client, "edge-1")
    assert sorted(int(h) for h in redis_client.zrange(keys.DELIVERY_HOURS, 0, -1)) == sorted({int(edge // HOUR), hour})
    assert delivery_index.count(redis_client) == 2
    assert deliveries.trim(redis_client, retention_seconds=RETENTION, now=now) == 0  # nothing twice
    # an hour later the edge hour is past retention too
    assert deliveries.trim(redis_client, retention_seconds=RETENTION, now=now + HOUR) == 1
    assert not deliveries.exists(redis_client, "edge-1") and deliveries.exists(redis_client, recent)


def test_a_list_the_previous_release_began_stops_expiring_and_its_deliveries_keep_their_ttl(
        redis_client: redis.Redis) -> None:
    now = time.time()
    hour = int(now // HOUR)
    bucket = keys.delivery_bucket(hour)
    # what the previous release wrote this hour: a delivery with its TTL, the list expiring with it
    store(redis_client, sample("prev-1", now - 1, tasks=()))
    redis_client.expire(keys.delivery("prev-1"), RETENTION)
    redis_client.expireat(bucket, (hour + 1) * HOUR + RETENTION)
    store(redis_client, sample("new-1", now, tasks=()))
    assert redis_client.ttl(bucket) == -1  # else it would expire before the trim deletes new-1 by it
    assert 0 < redis_client.ttl(keys.delivery("prev-1")) <= RETENTION
    assert deliveries.trim(redis_client, retention_seconds=RETENTION, now=now + RETENTION + 2 * HOUR) == 2
    assert not redis_client.exists(keys.delivery("prev-1"), keys.delivery("new-1"), bucket)


def test_an_unreadable_entry_does_not_stop_the_trim(redis_client: redis.Redis) -> None:
    old = time.time() - 30 * 86400
    store(redis_client, sample("fine-old", old, tasks=()))
    redis_client.rpush(keys.delivery_bucket(int(old // HOUR)), b"x-not-an-entry")
    assert deliveries.trim(redis_client, retention_seconds=RETENTION, now=time.time()) == 2
    assert not deliveries.exists(redis_client, "fine-old")
    assert not redis_client.exists(keys.delivery_bucket(int(old // HOUR)))


def test_an_unreadable_index_entry_names_its_bucket(redis_client: redis.Redis) -> None:
    store(redis_client, sample("fine-1", 7200.5, tasks=()))
    redis_client.rpush(keys.delivery_bucket(2), b"x-not-an-entry")
    with pytest.raises(delivery_index.IndexCorrupted, match="rg:deliveries:h:2"):
        list(delivery_index.entries(redis_client))


def test_guids_that_are_not_canonical_uuids_are_indexed_as_written() -> None:
    for guid in ("0b38dc21-cdc4-4168-afcc-eb4645325590", "0B38DC21-CDC4-4168-AFCC-EB4645325590",
                 "0b38dc21cdc44168afcceb4645325590", "sim-1", "abcdefghijklmnop", "é",
                 "0b38dc21-cdc4-4168-afcc-eb46 532559 ", "0b38dc2-1cdc4-4168-afcc-eb4645325590",
                 "0b38dc21-cdc4-4168-afcc-eb46453255-0", "0b38dc21-cdc4-4168-afcc-eb464532559g"):
        packed = delivery_index.pack(guid, 12.25)
        assert delivery_index.unpack(packed) == (12.25, guid)
    assert len(delivery_index.pack("0b38dc21-cdc4-4168-afcc-eb4645325590", 1.0)) == 25
