"""The agent protocol (/agent/v1/...) over real HTTP through the Flask client, on a real Redis: auth, bodies, work."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from app import create_app
from config import Settings, parse_policy
from runnerguard.prewarm.specs import CacheSpec, CommandSpec
from runnerguard.store import host_tokens, prewarm_stats, work
from tests.helpers import admin_headers, dumps, signed_headers
from tests.test_timeline import job_payload

SHA = "a" * 64
POLICY = f"""
[[pool]]
name = "laptop"
labels = ["self-hosted", "Linux", "X64"]
hosts = ["laptop-extra", "laptop-two"]

[[pool]]
name = "gpu"
labels = ["self-hosted", "gpu"]
hosts = ["gpu-box"]

[[host]]
name = "laptop-extra"
runner_dir = "/home/coldaine/actions-runner"
service = "actions.runner.Coldaine-ColdVox.laptop-extra.service"
cleanup_at = 0.85

[[cache]]
name = "vosk-small"
pools = ["laptop"]
url = "https://models.example/vosk-small.zip"
sha256 = "{SHA}"
unpack = "zip"
dest = "/var/cache/runnerguard/vosk/small"
size = 1000

[[cache]]
name = "cuda"
pools = ["gpu"]
url = "https://models.example/cuda.tar.gz"
sha256 = "{SHA}"
unpack = "tar.gz"
dest = "/var/cache/runnerguard/cuda/x"

[[command]]
name = "cargo-fetch"
argv = ["cargo", "fetch", "--locked"]
cwd = "/srv/mirror"
timeout_seconds = 600
pools = ["laptop"]
"""
REPORT: dict[str, Any] = {
    "agent_version": "0.1.0", "uptime": 3600.0, "load": [0.5, 0.4, 0.3],
    "memory": {"total": 16 * 2**30, "available": 8 * 2**30},
    "disk": {"/home/coldaine/actions-runner/_work": {"total": 1000, "used": 500, "free": 500}},
    "runner": {"state": "listening", "detail": "Listening for Jobs", "job": None, "service": "active"},
    "cleanups": [], "cache_answers": {},
}


@pytest.fixture()
def agent_client(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> FlaskClient:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    return create_app(settings.with_overrides(policy_path=policy)).test_client()


@pytest.fixture()
def tokens(redis_client: redis.Redis) -> dict[str, str]:
    out = {}
    for name in ("laptop-extra", "laptop-two", "gpu-box"):
        token = host_tokens.add(redis_client, name, now=time.time())
        assert token is not None
        out[name] = token
    return out


def as_host(name: str, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Runnerguard-Host": name}


def queue_job(client: FlaskClient, job_id: int, guid: str, labels: list[str] | None = None) -> Any:
    body = dumps(job_payload("queued", id=job_id, labels=labels or ["self-hosted", "Linux"]))
    return client.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job", guid=guid))


# --- auth -------------------------------------------------------------------------------------------------------

ENDPOINTS = [("get", "/agent/v1/config", None), ("get", "/agent/v1/work?wait=0", None),
             ("post", "/agent/v1/report", REPORT), ("post", "/agent/v1/work/abc/done", {"state": "hit"})]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_no_token_or_a_wrong_one_gets_401_with_a_bearer_challenge(agent_client: FlaskClient, tokens: dict[str, str],
                                                                  method: str, path: str, body: Any) -> None:
    call = getattr(agent_client, method)
    for headers in ({}, {"X-Runnerguard-Host": "laptop-extra"},
                    {"Authorization": "Basic eDp5", "X-Runnerguard-Host": "laptop-extra"},
                    {"Authorization": "Bearer ", "X-Runnerguard-Host": "laptop-extra"},
                    as_host("laptop-extra", "rgh_forged" + "x" * 40),
                    as_host("laptop-extra", tokens["laptop-extra"][:-1]),  # one character short
                    as_host("laptop-extra", "x" * 10_000)):
        answer = call(path, headers=headers, json=body)
        assert answer.status_code == 401, (headers, answer.get_json())
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_a_revoked_token_gets_401(agent_client: FlaskClient, tokens: dict[str, str], redis_client: redis.Redis,
                                  method: str, path: str, body: Any) -> None:
    assert host_tokens.revoke(redis_client, "laptop-extra")
    answer = getattr(agent_client, method)(path, headers=as_host("laptop-extra", tokens["laptop-extra"]), json=body)
    assert answer.status_code == 401


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_a_token_acting_as_another_host_gets_403(agent_client: FlaskClient, tokens: dict[str, str], method: str,
                                                 path: str, body: Any) -> None:
    call = getattr(agent_client, method)
    for header in ("laptop-two", "", "LAPTOP-EXTRA", "laptop-extra\t", "laptop-extra."):
        headers = {"Authorization": f"Bearer {tokens['laptop-extra']}", "X-Runnerguard-Host": header}
        assert call(path, headers=headers, json=body).status_code == 403, header
    no_header = {"Authorization": f"Bearer {tokens['laptop-extra']}"}
    assert call(path, headers=no_header, json=body).status_code == 403


def test_tokens_are_stored_only_as_hashes(redis_client: redis.Redis, tokens: dict[str, str]) -> None:
    dump = b"".join(redis_client.dump(k) or b"" for k in redis_client.keys("*"))
    for token in tokens.values():
        assert token.encode() not in dump
        assert host_tokens.digest(token).encode() in dump
    assert len(tokens["laptop-extra"]) >= 40 and len(set(tokens.values())) == 3


# --- config -----------------------------------------------------------------------------------------------------

def test_config_is_the_hosts_own_table_and_its_pools_caches(agent_client: FlaskClient, tokens: dict[str, str]) -> None:
    answer = agent_client.get("/agent/v1/config", headers=as_host("laptop-extra", tokens["laptop-extra"]))
    assert answer.status_code == 200
    config = answer.get_json()
    assert config["host"] == {"name": "laptop-extra", "runner_dir": "/home/coldaine/actions-runner",
                              "service": "actions.runner.Coldaine-ColdVox.laptop-extra.service",
                              "cleanup_at": 0.85, "keep_days": 7, "dry_run": False}
    assert [c["name"] for c in config["caches"]] == ["vosk-small"]  # not the gpu pool's
    assert [c["name"] for c in config["commands"]] == ["cargo-fetch"]
    assert config["report_every"] == 30 and config["server_version"]
    # the agent reads them back with the same spec parsers
    assert CacheSpec.from_mapping(config["caches"][0]).size == 1000
    assert CommandSpec.from_mapping(config["commands"][0]).argv == ("cargo", "fetch", "--locked")
    undeclared = agent_client.get("/agent/v1/config", headers=as_host("gpu-box", tokens["gpu-box"])).get_json()
    assert undeclared["host"]["runner_dir"] is None and [c["name"] for c in undeclared["caches"]] == ["cuda"]


# --- work -------------------------------------------------------------------------------------------------------

def test_a_queued_job_makes_one_item_per_host_and_cache_whatever_the_replays(  # type: ignore[no-untyped-def]
        agent_client: FlaskClient, tokens: dict[str, str], redis_client: redis.Redis, drain) -> None:
    answer = queue_job(agent_client, 501, "q-1")
    assert answer.get_json()["queued"] == ["timings", "prewarm"]
    drain(policy=parse_policy(tomllib.loads(POLICY)))
    # A replay storm: the same delivery replayed 30 times, and GitHub redelivering it under new GUIDs.
    for _ in range(30):
        assert agent_client.post("/api/deliveries/q-1/replay", headers=admin_headers()).status_code == 202
    for n in range(5):
        queue_job(agent_client, 501, f"q-1-redelivered-{n}")
    drain(policy=parse_policy(tomllib.loads(POLICY)))
    offered = {}
    for host in ("laptop-extra", "laptop-two"):
        answer = agent_client.get("/agent/v1/work?wait=0", headers=as_host(host, tokens[host]))
        assert answer.status_code == 200
        offered[host] = answer.get_json()["items"]
    for host, items in offered.items():
        assert sorted((i["kind"], i["name"], i["job_id"]) for i in items) == [
            ("cache", "vosk-small", 501), ("command", "cargo-fetch", 501)], host
        for item in items:
            assert set(item) == {"id", "kind", "name", "job_id", "lease_seconds"}  # no function, no payload
            assert item["lease_seconds"] == 600
    assert agent_client.get("/agent/v1/work?wait=0", headers=as_host("gpu-box", tokens["gpu-box"])).status_code == 204
    # once offered, an item is not offered again within its lease
    again = agent_client.get("/agent/v1/work?wait=0", headers=as_host("laptop-extra", tokens["laptop-extra"]))
    assert again.status_code == 204
    # another job of the pool makes new items
    queue_job(agent_client, 502, "q-2")
    drain(policy=parse_policy(tomllib.loads(POLICY)))
    fresh = agent_client.get("/agent/v1/work?wait=0", headers=as_host("laptop-extra", tokens["laptop-extra"]))
    assert {i["job_id"] for i in fresh.get_json()["items"]} == {502}


def test_a_job_no_host_warms_for_queues_no_prewarm(agent_client: FlaskClient) -> None:
    assert queue_job(agent_client, 9, "ubuntu", labels=["ubuntu-latest"]).get_json()["queued"] == ["timings"]


def test_an_item_not_done_within_its_lease_is_offered_again(agent_client: FlaskClient, tokens: dict[str, str],
                                                            redis_client: redis.Redis) -> None:
    headers = as_host("laptop-extra", tokens["laptop-extra"])
    assert work.create(redis_client, "laptop-extra", job_id=7, kind="cache", name="vosk-small", now=time.time(),
                       lease_seconds=1)
    first = agent_client.get("/agent/v1/work?wait=0", headers=headers).get_json()["items"]
    assert agent_client.get("/agent/v1/work?wait=0", headers=headers).status_code == 204
    time.sleep(1.2)
    second = agent_client.get("/agent/v1/work?wait=0", headers=headers).get_json()["items"]
    assert [i["id"] for i in second] == [i["id"] for i in first]
    done = agent_client.post(f"/agent/v1/work/{first[0]['id']}/done", headers=headers,
                             json={"state": "installed", "bytes": 1000, "seconds": 2.5, "error": None})
    assert done.status_code == 200 and done.get_json() == {"ok": True}
    time.sleep(1.2)
    assert agent_client.get("/agent/v1/work?wait=0", headers=headers).status_code == 204  # done: never again
    assert work.pending(redis_client, "laptop-extra") == 0


def test_done_feeds_the_cache_stats_and_refuses_other_hosts_items(  # type: ignore[no-untyped-def]
        agent_client: FlaskClient, tokens: dict[str, str], redis_client: redis.Redis, drain) -> None:
    queue_job(agent_client, 601, "d-1")
    drain(policy=parse_policy(tomllib.loads(POLICY)))
    mine = as_host("laptop-extra", tokens["laptop-extra"])
    items = {i["kind"]: i for i in agent_client.get("/agent/v1/work?wait=0", headers=mine).get_json()["items"]}
    cache_id = items["cache"]["id"]
    other = agent_client.post(f"/agent/v1/work/{cache_id}/done", headers=as_host("laptop-two", tokens["laptop-two"]),
                              json={"state": "hit"})
    assert other.status_code == 403
    assert agent_client.post("/agent/v1/work/nope/done", headers=mine, json={"state": "hit"}).status_code == 404
    assert agent_client.post("/agent/v1/work/..%2F..%2Fx/done", headers=mine, json={"state": "hit"}).status_code \
        in (404, 405)
    answer = agent_client.post(f"/agent/v1/work/{cache_id}/done", headers=mine,
                               json={"state": "installed", "bytes": 1000, "seconds": 1.5, "error": None})
    assert answer.status_code == 200
    assert agent_client.post(f"/agent/v1/work/{cache_id}/done", headers=mine,
                             json={"state": "hit"}).status_code == 404  # done once
    ran = agent_client.post(f"/agent/v1/work/{items['command']['id']}/done", headers=mine,
                            json={"state": "ran", "bytes": 0, "seconds": 3.0, "error": None})
    assert ran.status_code == 200
    row = next(r for r in prewarm_stats.cache_rows(redis_client) if r["host"] == "laptop-extra")
    assert (row["name"], row["state"], row["misses"], row["bytes_downloaded"]) == ("vosk-small", "installed", 1, 1000)
    rows = agent_client.get("/api/caches?host=laptop-extra", headers=admin_headers()).get_json()["caches"]
    assert rows[0]["state"] == "installed" and rows[0]["hit_rate"] == 0.0


@pytest.mark.parametrize(("body", "why"), [
    ({"state": "hit", "function": "os.system"}, "function"),
    ({"state": "exploded"}, "state"),
    ({"state": "hit", "bytes": -1}, "bytes"),
    ({"state": "hit", "bytes": True}, "bytes"),
    ({"state": "hit", "seconds": "1"}, "seconds"),
    ({"state": "error", "error": "x" * 501}, "error"),
    ([], "object"),
])
def test_bad_done_bodies_get_400_naming_the_key(agent_client: FlaskClient, tokens: dict[str, str],
                                                redis_client: redis.Redis, body: Any, why: str) -> None:
    work.create(redis_client, "laptop-extra", job_id=1, kind="cache", name="vosk-small", now=time.time())
    headers = as_host("laptop-extra", tokens["laptop-extra"])
    item = agent_client.get("/agent/v1/work?wait=0", headers=headers).get_json()["items"][0]
    answer = agent_client.post(f"/agent/v1/work/{item['id']}/done", headers=headers, json=body)
    assert answer.status_code == 400 and why in answer.get_json()["error"]
    assert work.pending(redis_client, "laptop-extra") == 1  # a refused result leaves the item to its lease


@pytest.mark.parametrize("wait", ["31", "-1", "abc", "1.5", "99999999999999999999"])
def test_wait_out_of_range_is_400(agent_client: FlaskClient, tokens: dict[str, str], wait: str) -> None:
    answer = agent_client.get(f"/agent/v1/work?wait={wait}", headers=as_host("laptop-extra", tokens["laptop-extra"]))
    assert answer.status_code == 400


# --- reports ----------------------------------------------------------------------------------------------------

def test_a_report_is_kept_and_served_by_api_hosts(agent_client: FlaskClient, tokens: dict[str, str]) -> None:
    headers = as_host("laptop-extra", tokens["laptop-extra"])
    busy = {**REPORT, "runner": {"state": "busy", "detail": "Running job: build", "job": {"name": "build"},
                                 "service": "active"}}
    answer = agent_client.post("/agent/v1/report", headers=headers, json=busy)
    assert answer.status_code == 200 and answer.get_json()["state"] == "up"
    rows = {h["name"]: h for h in agent_client.get("/api/hosts", headers=admin_headers()).get_json()["hosts"]}
    assert set(rows) == {"laptop-extra", "laptop-two", "gpu-box"}
    row = rows["laptop-extra"]
    assert (row["state"], row["runner"], row["job"], row["agent_version"]) == ("up", "busy", {"name": "build"}, "0.1.0")
    assert row["disk"]["/home/coldaine/actions-runner/_work"] == {"total": 1000, "used": 500, "free": 500,
                                                                  "used_ratio": 0.5}
    assert row["load"] == [0.5, 0.4, 0.3] and row["memory"]["total"] == 16 * 2**30
    assert row["healthy_since"] is not None and row["cleanup_at"] == 0.85
    assert rows["laptop-two"]["state"] == "down" and rows["laptop-two"]["last_seen"] is None


def test_cache_answers_feed_the_job_side_hit_rate(agent_client: FlaskClient, tokens: dict[str, str],
                                                  redis_client: redis.Redis) -> None:
    prewarm_stats.record(redis_client, "vosk-small", "laptop-extra", counter="misses", state="installed",
                         now=time.time())
    headers = as_host("laptop-extra", tokens["laptop-extra"])
    for hit, waited in ((3, 1), (4, 0)):
        body = {**REPORT, "cache_answers": {"vosk-small": {"hit": hit, "waited": waited}, "cuda": {"hit": 50}}}
        assert agent_client.post("/agent/v1/report", headers=headers, json=body).status_code == 200
    rows = agent_client.get("/api/caches?host=laptop-extra", headers=admin_headers()).get_json()["caches"]
    assert [(r["name"], r["job_hits"], r["job_waited"], r["hit_rate"], r["prewarm_hit_rate"]) for r in rows] == [
        ("vosk-small", 7, 1, 0.875, 0.0)]  # cuda is not this host's: its answers are not counted
    score = agent_client.get("/api/scorecard", headers=admin_headers()).get_json()["rows"]
    hit_rate = next(r for r in score if r["pool"] == "laptop" and r["metric"] == "cache_hit_rate")
    assert hit_rate["actual"] == pytest.approx(0.875)


@pytest.mark.parametrize(("change", "why"), [
    ({"shell": "rm -rf /"}, "shell"),
    ({"runner": {"state": "pwned"}}, "runner.state"),
    ({"runner": {"state": "busy", "job": {"name": "x", "payload": "y"}}}, "payload"),
    ({"disk": {"relative/path": {"total": 1, "used": 1, "free": 0}}}, "absolute"),
    ({"disk": {"/x": {"total": -5, "used": 1, "free": 0}}}, "total"),
    ({"disk": {"/x": {"total": 5, "used": 1, "free": 0, "inodes": 3}}}, "inodes"),
    ({"load": [1, 2, 3, 4]}, "load"),
    ({"load": [float("nan")]}, "load"),
    ({"uptime": "long"}, "uptime"),
    ({"memory": {"total": 1, "swap": 2}}, "swap"),
    ({"cleanups": [{"at": 1, "freed_bytes": 1, "removed": ["/a"], "dry_run": "no"}]}, "dry_run"),
    ({"cleanups": [{"at": 1, "freed_bytes": 1, "removed": ["/a"], "why": "x"}]}, "why"),
    ({"cache_answers": {"../x": {"hit": 1}}}, "cache_answers"),
    ({"cache_answers": {"vosk-small": {"hit": -1}}}, "hit"),
    ({"agent_version": "1\n2"}, "agent_version"),
])
def test_bad_reports_get_400_naming_what_is_wrong(agent_client: FlaskClient, tokens: dict[str, str],
                                                  redis_client: redis.Redis, change: dict[str, Any], why: str) -> None:
    body = json.dumps({**REPORT, **change}, allow_nan=True)
    answer = agent_client.post("/agent/v1/report", headers={**as_host("laptop-extra", tokens["laptop-extra"]),
                                                            "Content-Type": "application/json"}, data=body)
    assert answer.status_code == 400 and why in answer.get_json()["error"], answer.get_json()
    assert redis_client.get("rg:host:laptop-extra:report") is None


def test_bodies_over_64_kib_get_413_and_non_json_400(agent_client: FlaskClient, tokens: dict[str, str]) -> None:
    headers = {**as_host("laptop-extra", tokens["laptop-extra"]), "Content-Type": "application/json"}
    big = json.dumps({**REPORT, "agent_version": "x" * (65 * 1024)})
    assert agent_client.post("/agent/v1/report", headers=headers, data=big).status_code == 413
    assert agent_client.post("/agent/v1/work/x/done", headers=headers, data=big).status_code == 413
    assert agent_client.post("/agent/v1/report", headers=headers, data=b"{not json").status_code == 400
    assert agent_client.post("/agent/v1/report", headers=headers, data=b"\xff\xfe").status_code == 400
    # an unauthenticated huge body is refused before it is read
    assert agent_client.post("/agent/v1/report", data=big).status_code == 401

