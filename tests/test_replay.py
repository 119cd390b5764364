"""Admin replay over HTTP and the CLI: listing with filters and cursors, single and bulk replays, idempotence."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from flask import Flask
from flask.testing import FlaskClient

from runnerguard.store import keys
from tests.helpers import admin_headers, dumps, signed_headers
from tests.test_timings import deliver, job_events

API = admin_headers()


def seed(client: FlaskClient, jobs: int = 6) -> list[str]:
    now = time.time()
    guids = []
    for n in range(jobs):
        for i, event in enumerate(job_events(500 + n, "failure" if n % 2 else "success", created=now - 3600)):
            guid = f"seed-{n}-{i}"
            deliver(client, event, guid)
            guids.append(guid)
    return guids


def recorded_state(client: redis.Redis) -> dict[str, Any]:
    """Everything the timeline and its indexes hold (not the delivery log or its attempt history)."""
    state: dict[str, Any] = {}
    for key in sorted(k.decode() for k in client.scan_iter("rg:*")):
        if key.startswith(("rg:delivery", "rg:deliveries", "rg:body:", "rg:replay", "rg:metrics")):
            continue
        kind = client.type(key).decode()
        if kind == "string":
            record = json.loads(client.get(key))
            if isinstance(record, dict):  # a job record; the cause store also keeps flags ("1")
                record.pop("seen", None)
            state[key] = record
        elif kind == "zset":
            state[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            state[key] = sorted(client.smembers(key))
    return state


def test_list_filters_and_pages_with_an_opaque_cursor(client: FlaskClient, redis_client: redis.Redis) -> None:
    seed(client, jobs=4)
    body = dumps({"zen": "hi"})
    client.post("/webhooks/github", data=body, headers=signed_headers(body, "ping", guid="ping-x"))
    everything = client.get("/api/deliveries?limit=500", headers=API).get_json()
    assert len(everything["deliveries"]) == 13 and everything["next"] is None
    pages, cursor, seen = 0, None, []
    while True:
        url = "/api/deliveries?limit=5&event=workflow_job" + (f"&cursor={cursor}" if cursor else "")
        reply = client.get(url, headers=API).get_json()
        seen += [d["guid"] for d in reply["deliveries"]]
        pages += 1
        cursor = reply["next"]
        if not cursor:
            break
    assert pages == 3 and len(seen) == 12 == len(set(seen))
    completed = client.get("/api/deliveries?action=completed&repo=OCTO/app", headers=API).get_json()["deliveries"]
    assert {d["guid"] for d in completed} == {f"seed-{n}-2" for n in range(4)}
    assert client.get("/api/deliveries?state=ignored", headers=API).get_json()["deliveries"][0]["guid"] == "ping-x"
    future = client.get("/api/deliveries?since=2999-01-01T00:00:00Z", headers=API).get_json()
    assert future == {"deliveries": [], "next": None}


def test_bad_filters_and_cursors_are_400(client: FlaskClient) -> None:
    for query in ("since=yesterday", "state=exploded", "limit=0", "limit=abc", "cursor=!!!", "cursor=WzFd",
                  "colour=red", "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z"):
        response = client.get(f"/api/deliveries?{query}", headers=API)
        assert response.status_code == 400, query
        assert response.get_json()["error"]
    assert client.get("/api/deliveries").status_code == 401
    assert client.post("/api/replays", data="nope", headers={**API, "Content-Type": "application/json"}).status_code == 400
    assert client.post("/api/replays", json=[1], headers=API).status_code == 400
    assert client.post("/api/replays", json={"event": 5}, headers=API).status_code == 400


def test_show_has_headers_payload_and_attempts(client: FlaskClient, drain) -> None:  # type: ignore[no-untyped-def]
    seed(client, jobs=1)
    drain()
    shown = client.get("/api/deliveries/seed-0-2", headers=API).get_json()
    assert shown["headers"]["X-GitHub-Event"] == "workflow_job"
    assert shown["payload"]["action"] == "completed"
    assert shown["state"] == "done"
    assert sorted((a["task"], a["state"]) for a in shown["attempts"]) == [
        ("causes", "done"), ("rollback", "done"), ("timings", "done")]


def test_replay_one_runs_its_handlers_again(client: FlaskClient, redis_client: redis.Redis, drain) -> None:  # type: ignore[no-untyped-def]
    seed(client, jobs=1)
    drain()
    before = recorded_state(redis_client)
    response = client.post("/api/deliveries/seed-0-2/replay", headers=API)
    assert response.status_code == 202
    assert response.get_json() == {"delivery": "seed-0-2", "queued": ["timings", "rollback", "causes"]}
    assert client.get("/api/deliveries/seed-0-2", headers=API).get_json()["state"] == "queued"
    assert drain() == 3
    shown = client.get("/api/deliveries/seed-0-2", headers=API).get_json()
    assert shown["state"] == "done" and len(shown["attempts"]) == 6
    assert recorded_state(redis_client) == before
    assert client.post("/api/deliveries/missing/replay", headers=API).status_code == 404


def test_replaying_everything_twice_changes_nothing(client: FlaskClient, redis_client: redis.Redis, drain) -> None:  # type: ignore[no-untyped-def]
    seed(client, jobs=6)
    drain()
    before = recorded_state(redis_client)
    assert any(k.startswith("rg:pool:self-hosted:failed") for k in before)
    for _ in range(2):
        started = client.post("/api/replays", json={}, headers=API)
        assert started.status_code == 202
        replay_id = started.get_json()["id"]
        assert started.get_json()["state"] == "queued"
        drain()  # runs the bulk task, which queues the replays
        drain()  # runs the replayed handlers
        status = client.get(f"/api/replays/{replay_id}", headers=API).get_json()
        assert (status["state"], status["total"], status["done"], status["errors"]) == ("done", 18, 18, 0)
    assert recorded_state(redis_client) == before


def test_a_cancelled_bulk_replay_does_nothing(client: FlaskClient, redis_client: redis.Redis, drain) -> None:  # type: ignore[no-untyped-def]
    seed(client, jobs=2)
    drain()
    replay_id = client.post("/api/replays", json={"action": "completed"}, headers=API).get_json()["id"]
    cancelled = client.delete(f"/api/replays/{replay_id}", headers=API).get_json()
    assert cancelled["state"] == "cancelled"
    drain()
    assert client.get(f"/api/replays/{replay_id}", headers=API).get_json()["done"] == 0
    assert client.get("/api/replays/nope", headers=API).status_code == 404


def test_cli_lists_shows_and_replays(app: Flask, client: FlaskClient, redis_client: redis.Redis, drain) -> None:  # type: ignore[no-untyped-def]
    seed(client, jobs=2)
    drain()
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["deliveries", "list", "--action", "completed"])
    assert listed.exit_code == 0 and listed.output.count("workflow_job") == 2
    shown = runner.invoke(args=["deliveries", "show", "seed-1-2"])
    assert shown.exit_code == 0 and json.loads(shown.output)["state"] == "done"
    assert runner.invoke(args=["deliveries", "show", "nope"]).exit_code == 1
    one = runner.invoke(args=["deliveries", "replay", "seed-1-2"])
    assert one.exit_code == 0 and "timings, rollback" in one.output
    bulk = runner.invoke(args=["deliveries", "replay", "--all"])
    assert bulk.exit_code == 0 and "queued 6 deliveries" in bulk.output
    assert runner.invoke(args=["deliveries", "replay"]).exit_code == 2
    assert runner.invoke(args=["deliveries", "list", "--since", "yesterday"]).exit_code == 2
    # one completion (timings, rollback, causes), then all 6 deliveries (2 of them completions)
    assert drain() == 13
    assert redis_client.exists(keys.job(3, 501))
