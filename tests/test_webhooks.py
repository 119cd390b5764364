"""POST /webhooks/github: signatures, headers, bodies, dedupe, the durable record and the enqueue."""

from __future__ import annotations

import json

import redis
from flask.testing import FlaskClient

from app import create_app
from runnerguard.domain.signatures import sign, verify
from runnerguard.queue import tasks as rq_tasks
from runnerguard.store import deliveries, delivery_index, keys, metrics
from tests.helpers import SECRET, dumps, signed_headers

JOB = {
    "action": "queued",
    "workflow_job": {"id": 7, "run_id": 70, "run_attempt": 1, "labels": ["self-hosted", "linux"],
                     "created_at": "2026-11-27T10:00:00Z", "started_at": "2026-11-27T10:00:00Z",
                     "status": "queued", "name": "build", "workflow_name": "CI"},
    "repository": {"id": 1, "full_name": "octo/app"},
    "installation": {"id": 99},
}


def post(client: FlaskClient, body: bytes, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    return client.post("/webhooks/github", data=body, headers=headers)


def test_signed_workflow_job_is_recorded_and_enqueued(client: FlaskClient, redis_client: redis.Redis) -> None:
    body = dumps(JOB)
    headers = signed_headers(body, "workflow_job", guid="d-1")
    response = post(client, body, headers)
    assert response.status_code == 202
    assert response.get_json() == {"delivery": "d-1", "queued": ["timings"]}
    stored = deliveries.load(redis_client, "d-1")
    assert stored is not None
    assert stored.body == body  # the exact raw bytes
    assert (stored.event, stored.action, stored.installation_id) == ("workflow_job", "queued", 99)
    assert stored.repo == "octo/app"
    assert stored.hook_id == "123" and stored.target_type == "integration"
    assert stored.state == "queued"
    queue = rq_tasks.queue("events", redis_client)
    assert queue.job_ids == ["d-1_timings"]
    assert queue.fetch_job("d-1_timings").args == ["d-1"]  # JSON; tasks carry the id, never the payload


def test_jobs_stay_whole_when_redis_lost_their_templates(client: FlaskClient, redis_client: redis.Redis) -> None:
    """The intake's script copies RQ's static job fields from Redis (store/rq_templates.py); a Redis that lost them
    (FLUSHALL, an old copy restored) gets them back from the web process, and no job is written without them."""
    body = dumps(JOB)
    assert post(client, body, signed_headers(body, "workflow_job", guid="t-1")).status_code == 202
    first = redis_client.hgetall("rq:job:t-1_timings")
    redis_client.flushall()
    other = dumps({**JOB, "workflow_job": {**JOB["workflow_job"], "id": 8}})
    assert post(client, other, signed_headers(other, "workflow_job", guid="t-2")).status_code == 202
    job = rq_tasks.queue("events", redis_client).fetch_job("t-2_timings")
    assert job is not None and job.args == ["t-2"] and job.func_name == rq_tasks.TIMINGS.path
    assert redis_client.hgetall("rq:job:t-2_timings").keys() == first.keys()


def test_duplicate_delivery_is_not_enqueued_twice(client: FlaskClient, redis_client: redis.Redis) -> None:
    body = dumps(JOB)
    headers = signed_headers(body, "workflow_job", guid="dup-1")
    assert post(client, body, headers).status_code == 202
    again = post(client, body, headers)
    assert again.status_code == 200
    assert again.get_json()["status"] == "duplicate"
    assert rq_tasks.queue("events", redis_client).count == 1
    labels = {"event": "workflow_job"}
    assert metrics.value(redis_client, "runnerguard_webhook_deliveries_total", {**labels, "outcome": "duplicate"}) == 1
    assert metrics.value(redis_client, "runnerguard_webhook_deliveries_total", {**labels, "outcome": "accepted"}) == 1


def test_bad_signature_is_401_and_stores_nothing(client: FlaskClient, redis_client: redis.Redis) -> None:
    body = dumps(JOB)
    for bad in ({"X-Hub-Signature-256": sign("wrong", body)}, {"X-Hub-Signature-256": ""},
                {"X-Hub-Signature-256": sign(SECRET, body).upper()}, {"X-Hub-Signature-256": sign(SECRET, b"other")},
                {"X-Hub-Signature-256": sign(SECRET, body)[:-2]}):
        headers = {**signed_headers(body, "workflow_job", guid="bad-1"), **bad}
        response = post(client, body, headers)
        assert response.status_code == 401, bad
        assert "error" in response.get_json()
    headers = signed_headers(body, "workflow_job", guid="bad-1")
    del headers["X-Hub-Signature-256"]
    headers["X-Hub-Signature"] = "sha1=0000"
    response = post(client, body, headers)
    assert response.status_code == 401
    assert "sha1" in response.get_json()["error"]
    assert not redis_client.exists(keys.delivery("bad-1"))
    assert rq_tasks.queue("events", redis_client).count == 0
    assert metrics.value(redis_client, "runnerguard_webhook_deliveries_total",
                         {"event": "workflow_job", "outcome": "bad_signature"}) == 6


def test_previous_secret_is_accepted_during_rotation(settings, redis_client) -> None:  # type: ignore[no-untyped-def]

    app = create_app(settings.with_overrides(webhook_secret="new-secret", webhook_secret_previous=SECRET))
    body = dumps(JOB)
    assert post(app.test_client(), body, signed_headers(body, "workflow_job", secret=SECRET)).status_code == 202
    body = dumps({**JOB, "action": "waiting"})  # a new body: the same one again would be a replay (duplicate)
    assert post(app.test_client(), body, signed_headers(body, "workflow_job", secret="new-secret")).status_code == 202
    assert post(app.test_client(), body, signed_headers(body, "workflow_job", secret="other")).status_code == 401


def test_missing_event_or_delivery_header_is_400(client: FlaskClient, redis_client: redis.Redis) -> None:
    body = dumps(JOB)
    for header in ("X-GitHub-Event", "X-GitHub-Delivery"):
        headers = signed_headers(body, "workflow_job")
        del headers[header]
        response = post(client, body, headers)
        assert response.status_code == 400
        assert header in response.get_json()["error"]
    assert delivery_index.count(redis_client) == 0


def test_malformed_ids_are_400(client: FlaskClient) -> None:
    body = dumps(JOB)
    for guid, event in (("../../etc/passwd", "workflow_job"), ("a" * 65, "workflow_job"), ("ok-1", "Workflow-Job"),
                        ("ok-2", "x" * 65), ("sp ace", "ping")):
        response = post(client, body, signed_headers(body, event, guid=guid))
        assert response.status_code == 400, (guid, event)


def test_body_that_is_not_json_is_400(client: FlaskClient, redis_client: redis.Redis) -> None:
    for body in (b"not json", b"[1, 2]", b"\xff\xfe", b"[" * 100_000):
        response = post(client, body, signed_headers(body, "workflow_job", guid="nj-1"))
        assert response.status_code == 400, body[:10]
    assert not redis_client.exists(keys.delivery("nj-1"))


def test_oversized_body_is_413_without_storing(settings, redis_client) -> None:  # type: ignore[no-untyped-def]

    app = create_app(settings.with_overrides(max_body_bytes=1000))
    body = dumps({**JOB, "padding": "x" * 2000})
    response = post(app.test_client(), body, signed_headers(body, "workflow_job", guid="big-1"))
    assert response.status_code == 413
    assert response.is_json
    assert not redis_client.exists(keys.delivery("big-1"))


def test_unknown_event_is_recorded_without_a_task(client: FlaskClient, redis_client: redis.Redis) -> None:
    body = dumps({"action": "created", "starred_at": None})
    response = post(client, body, signed_headers(body, "star", guid="star-1"))
    assert response.status_code == 202
    assert response.get_json() == {"delivery": "star-1", "queued": []}
    stored = deliveries.load(redis_client, "star-1")
    assert stored is not None and stored.state == "ignored"


def test_ping_answers_name_and_version_and_is_deduplicated(client: FlaskClient, redis_client: redis.Redis) -> None:
    body = dumps({"zen": "Keep it logically awesome.", "hook_id": 1})
    headers = signed_headers(body, "ping", guid="ping-1")
    response = post(client, body, headers)
    assert response.status_code == 200
    assert response.get_json()["app"] == "runnerguard"
    assert deliveries.exists(redis_client, "ping-1")
    assert post(client, body, headers).get_json()["status"] == "duplicate"


def test_redis_down_answers_503_json(settings) -> None:  # type: ignore[no-untyped-def]

    app = create_app(settings.with_overrides(redis_url="redis://127.0.0.1:1/0"))
    body = dumps(JOB)
    response = post(app.test_client(), body, signed_headers(body, "workflow_job"))
    assert response.status_code == 503
    assert response.get_json() == {"error": "storage unavailable, try again later"}
    assert app.test_client().get("/readyz").status_code == 503
    assert app.test_client().get("/healthz").status_code == 200


def test_every_shared_example_payload_is_accepted_and_recorded(client, redis_client, shared_dir) -> None:  # type: ignore[no-untyped-def]
    examples = sorted((shared_dir / "fixtures/github/webhooks").glob("*/*.json"))
    assert len(examples) >= 14
    for index, path in enumerate(examples):
        body = path.read_bytes()
        event = path.parent.name
        response = post(client, body, signed_headers(body, event, guid=f"ex-{index}"))
        assert response.status_code in (200, 202), path.name
        stored = deliveries.load(redis_client, f"ex-{index}")
        assert stored is not None and stored.body == body
        assert stored.action == json.loads(body).get("action")


def test_signature_vectors(shared_dir) -> None:  # type: ignore[no-untyped-def]

    vectors = json.loads((shared_dir / "fixtures/github/signature-vectors.json").read_text())["vectors"]
    assert vectors
    for vector in vectors:
        body = vector["payload"].encode("utf-8")
        assert verify([vector["secret"]], body, vector["x_hub_signature_256"]) is vector["valid"], vector["id"]
