"""The compressed delivery format (issue #18): byte-exact bodies, old records readable, clear errors, nothing lost."""

from __future__ import annotations

import json
import time

import pytest
import redis
import zstandard
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from devtools.payloads import PayloadFactory, fixture_bodies
from runnerguard.domain.events import WorkflowJobEvent
from runnerguard.domain.signatures import verify
from runnerguard.domain.timeline import merge
from runnerguard.services import replay
from runnerguard.store import body_codec, deliveries, jobstore, keys
from runnerguard.store.body_codec import BodyCodec, BodyError
from runnerguard.store.deliveries import Delivery
from tests import legacy_v0
from tests.helpers import SECRET, admin_headers, signed_headers


def post(client: FlaskClient, body: bytes, guid: str, event: str = "workflow_job") -> int:
    return client.post("/webhooks/github", data=body, headers=signed_headers(body, event, guid=guid)).status_code


def frame_of(client: redis.Redis, guid: str) -> bytes:
    """The v2 zstd frame of a delivery, its chunks "0", "1", ... joined."""
    raw = client.hgetall(keys.delivery(guid))
    return b"".join(raw[str(n).encode()] for n in range(len(raw)) if str(n).encode() in raw)


def bodies() -> list[tuple[str, bytes]]:
    """Real and generated workflow_job bodies, and bodies the dictionary knows nothing of."""
    factory = PayloadFactory(seed=3)
    found = [("workflow_job", b) for b in fixture_bodies()]
    found += [("workflow_job", b) for i in range(5) for _a, b in factory.job(900 + i, time.time())]
    found += [("ping", json.dumps({"zen": "Design for failure. \u00e9\u6f22\u5b57 \U0001f600", "hook_id": 1},
                                  ensure_ascii=False).encode()),
              ("workflow_job", b'{"action":"queued"}'),  # tiny
              ("meta", json.dumps({"blob": "".join(chr(33 + (i * 7919) % 90) for i in range(60000))}).encode()),
              ("ping", b'{\n  "pretty": [1, 2, 3],\t"spaces": "  "\n}\n')]
    return found


def test_every_body_comes_back_byte_exact_and_its_signature_still_verifies(
        client: FlaskClient, redis_client: redis.Redis) -> None:
    for n, (event, body) in enumerate(bodies()):
        guid = f"exact-{n}"
        assert post(client, body, guid, event) in (200, 202)
        stored = deliveries.load(redis_client, guid)
        assert stored is not None and stored.body == body
        assert verify((SECRET,), stored.body, signed_headers(body, event)["X-Hub-Signature-256"])
        raw = redis_client.hgetall(keys.delivery(guid))
        assert b"body" not in raw and b"zd" not in raw  # v2: no raw copy, no metadata fields beside the frame
        assert body_codec.frame_dict_id(frame_of(redis_client, guid)) == body_codec.SHIPPED_ID


def test_a_workflow_job_delivery_costs_a_tenth_of_its_body_and_stays_one_listpack(
        client: FlaskClient, redis_client: redis.Redis) -> None:
    sizes = []
    for n, (_action, body) in enumerate(PayloadFactory(seed=5).job(77, time.time())):
        assert post(client, body, f"small-{n}") == 202
        assert redis_client.object("encoding", keys.delivery(f"small-{n}")) == b"listpack"
        sizes.append((len(body), redis_client.memory_usage(keys.delivery(f"small-{n}"))))
    assert all(used < raw / 10 for raw, used in sizes), sizes


def test_deliveries_written_by_the_previous_format_stay_readable_and_replayable(
        app: Flask, client: FlaskClient, redis_client: redis.Redis, drain) -> None:  # type: ignore[no-untyped-def]
    body = next(iter(PayloadFactory(seed=8).job(4242, time.time())))[1]
    repo = json.loads(body)["repository"]["full_name"]
    old = Delivery(guid="old-1", event="workflow_job", body=body, received_at=time.time() - 60, action="queued",
                   hook_id="9", target_type="integration", target_id="5", installation_id=77,
                   repo=repo, tasks=("timings",))
    legacy_v0.record(redis_client, old, retention_seconds=3600)
    legacy_v0.mark_task(redis_client, "old-1", "timings", "failed", error="boom: once", now=100.5)
    legacy_v0.mark_task(redis_client, "old-1", "timings", "done", now=101.25)
    loaded = deliveries.load(redis_client, "old-1")
    assert loaded == Delivery(**{**old.__dict__, "task_states": {"timings": "done"}})
    assert deliveries.attempts(redis_client, "old-1") == [
        {"task": "timings", "state": "failed", "at": 100.5, "error": "boom: once"},
        {"task": "timings", "state": "done", "at": 101.25, "error": None}]
    shown = client.get("/api/deliveries/old-1", headers=admin_headers()).get_json()
    assert shown["state"] == "done" and len(shown["attempts"]) == 2
    # a replay of the old delivery runs on its raw body and adds its attempt beside the old ones
    replay.replay_one(redis_client, _dispatcher(app), "old-1")
    drain()
    assert [a["state"] for a in deliveries.attempts(redis_client, "old-1")] == ["failed", "done", "done"]
    assert jobstore.find(redis_client, repo=repo)[0]["job_id"] == 4242
    assert post(client, body, "old-1") == 200  # still a duplicate: the dedupe guard reads both formats


def _dispatcher(app: Flask):  # type: ignore[no-untyped-def]
    with app.app_context():
        from runnerguard.web.state import state  # noqa: PLC0415 - only inside an app context
        return state().intake.dispatcher


def test_a_job_record_in_plain_json_is_read_and_merged_into_the_compressed_format(
        client: FlaskClient, redis_client: redis.Redis, drain) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    (_, queued), (_, started), _completed = PayloadFactory(seed=9).job(5151, now - 600)
    event = WorkflowJobEvent.parse(json.loads(queued))
    old = merge(None, event.snapshot(), now - 600)
    old["pools"] = ["self-hosted"]
    legacy_v0.write_job(redis_client, old, retention_seconds=3600)
    key = keys.job(event.repo_id, 5151)
    assert jobstore.load(redis_client, [f"{event.repo_id}:5151"])[0]["status"] == "queued"
    assert post(client, started, "merge-1") == 202
    drain()
    raw = redis_client.get(key)
    assert raw is not None and raw[:4] == b"\x28\xb5\x2f\xfd"  # rewritten as a zstd frame
    merged = jobstore.load(redis_client, [f"{event.repo_id}:5151"])[0]
    assert merged["status"] == "in_progress" and set(merged["snapshots"]) == {"queued", "in_progress"}
    assert len(raw) < len(json.dumps(merged)) / 3


def _write_v1(client: redis.Redis, guid: str, dict_id: int, frame: bytes) -> None:
    client.hset(keys.delivery(guid), mapping={"event": "workflow_job", "received_at": 1.0, "tasks": "[]",
                                              "zd": dict_id, **{f"zb{n}": frame[i:i + 64] for n, i in
                                                                enumerate(range(0, len(frame), 64))}})


def test_a_body_compressed_with_an_unknown_dictionary_fails_with_its_id(
        client: FlaskClient, redis_client: redis.Redis) -> None:
    samples = [b for i in range(40) for _a, b in PayloadFactory(seed=i).job(i, 1.0)]
    foreign = zstandard.ZstdCompressionDict(body_codec.train(samples, dict_id=0x52479999))
    frame = zstandard.ZstdCompressor(dict_data=foreign).compress(samples[0])
    _write_v1(redis_client, "foreign-1", 0x52479999, frame)
    deliveries.codec_for.forget()
    with pytest.raises(BodyError, match=f"foreign-1.*dictionary {0x52479999}.*does not have"):
        deliveries.load(redis_client, "foreign-1")
    answer = client.get("/api/deliveries/foreign-1", headers=admin_headers())
    assert answer.status_code == 500 and answer.get_json() == {"error": "internal error"}


@pytest.mark.parametrize("damage", ["flip", "truncate", "wrong-id", "not-zstd"])
def test_a_corrupted_compressed_body_is_refused_never_returned_wrong(redis_client: redis.Redis, damage: str) -> None:
    body = next(iter(PayloadFactory(seed=2).job(1, 1.0)))[1]
    dict_id, frame = BodyCodec().compress(body)
    if damage == "flip":
        frame = frame[:40] + bytes([frame[40] ^ 0x01]) + frame[41:]
    elif damage == "truncate":
        frame = frame[:-70]
    elif damage == "not-zstd":
        frame = b"{" + frame[1:]
    _write_v1(redis_client, "bad-1", 1 if damage == "wrong-id" else dict_id, frame)
    with pytest.raises(BodyError, match="bad-1: stored body is corrupted"):
        deliveries.load(redis_client, "bad-1")


def test_attempts_are_fields_of_the_delivery_and_keep_their_order_and_errors(
        client: FlaskClient, redis_client: redis.Redis) -> None:
    body = b'{"zen": "x"}'
    assert post(client, body, "att-1", "ping") == 200
    for n in range(3):
        deliveries.mark_task(redis_client, "att-1", "timings", "failed", error=f"Boom:\tcolons: and tabs {n}",
                             now=1000.0 + n / 7)
    deliveries.mark_task(redis_client, "att-1", "prewarm@prewarm.host-1", "done", now=1001.0)
    assert deliveries.attempts(redis_client, "att-1") == [
        *({"task": "timings", "state": "failed", "at": 1000.0 + n / 7, "error": f"Boom:\tcolons: and tabs {n}"}
          for n in range(3)),
        {"task": "prewarm@prewarm.host-1", "state": "done", "at": 1001.0, "error": None}]
    assert not redis_client.exists(keys.delivery_attempts("att-1"))  # no list key of its own any more


def test_many_deliveries_none_lost_and_duplicates_still_refused(client: FlaskClient, redis_client: redis.Redis) -> None:
    factory = PayloadFactory(seed=12)
    sent = {}
    for i in range(60):
        for action, body in factory.job(3000 + i, time.time()):
            sent[f"many-{i}-{action.replace('_', '-')}"] = body
            assert post(client, body, f"many-{i}-{action.replace('_', '-')}") == 202
    for guid, body in sent.items():
        assert post(client, body, guid) == 200
        loaded = deliveries.load(redis_client, guid)
        assert loaded is not None and loaded.body == body and loaded.tasks


def test_train_dictionary_from_the_live_log_keeps_old_deliveries_readable(
        settings, redis_client: redis.Redis, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(settings)
    client = app.test_client()
    factory = PayloadFactory(seed=21)
    before = {}
    for i in range(40):
        for action, body in factory.job(8000 + i, time.time()):
            before[f"pre-{i}-{action.replace('_', '-')}"] = body
            assert post(client, body, f"pre-{i}-{action.replace('_', '-')}") == 202
    runner = app.test_cli_runner()
    out = tmp_path / "trained.zdict"
    result = runner.invoke(args=["deliveries", "train-dictionary", "--samples", "100", "--size", "4096",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    new_id = body_codec.RECORD_ID + 1  # above every shipped id
    assert f"dictionary {new_id}" in result.output
    assert int(redis_client.get(keys.BODY_DICTIONARY_ACTIVE)) == new_id
    assert out.read_bytes() == redis_client.hget(keys.BODY_DICTIONARIES, str(new_id))
    assert zstandard.ZstdCompressionDict(out.read_bytes()).dict_id() == new_id
    deliveries.codec_for.forget()  # a restarted web process
    restarted = create_app(settings).test_client()
    body = next(iter(factory.job(9999, time.time())))[1]
    assert post(restarted, body, "post-1") == 202
    assert body_codec.frame_dict_id(frame_of(redis_client, "post-1")) == new_id
    assert deliveries.load(redis_client, "post-1").body == body  # type: ignore[union-attr]
    for guid, old in before.items():
        assert deliveries.load(redis_client, guid).body == old  # type: ignore[union-attr]
    deliveries.codec_for.forget()


def test_train_dictionary_with_too_few_deliveries_says_so(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["deliveries", "train-dictionary"])
    assert result.exit_code == 1 and "at least 20 are needed" in result.output


def test_a_task_on_an_unreadable_body_fails_at_once_with_the_reason_on_the_delivery(
        client: FlaskClient, redis_client: redis.Redis, drain) -> None:  # type: ignore[no-untyped-def]
    body = next(iter(PayloadFactory(seed=4).job(61, time.time())))[1]
    assert post(client, body, "rot-1") == 202
    key = keys.delivery("rot-1")
    chunk = redis_client.hget(key, "2")
    redis_client.hset(key, "2", bytes([chunk[0] ^ 0xFF]) + chunk[1:])
    drain()
    delivery_state = redis_client.hget(key, "task:timings").decode()
    assert delivery_state.startswith("failed: delivery rot-1: stored body is corrupted"), delivery_state
    assert [a["state"] for a in deliveries.attempts(redis_client, "rot-1")] == ["failed"]  # once: no retry
    assert redis_client.zcard("rq:scheduled:events") == 0


def test_an_active_dictionary_missing_from_redis_falls_back_to_the_shipped_one(
        settings, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    redis_client.set(keys.BODY_DICTIONARY_ACTIVE, str(body_codec.ID_BASE + 77))
    deliveries.codec_for.forget()
    client = create_app(settings).test_client()
    body = next(iter(PayloadFactory(seed=6).job(62, time.time())))[1]
    assert post(client, body, "fallback-1") == 202
    assert body_codec.frame_dict_id(frame_of(redis_client, "fallback-1")) == body_codec.SHIPPED_ID
    assert deliveries.load(redis_client, "fallback-1").body == body  # type: ignore[union-attr]
    deliveries.codec_for.forget()
