"""A task done without error is its compact mark alone (no `task:<name>=done` beside it); `task:<name>` holds the
other states (a replay's "queued", "failed: <error>") and wins over marks. The previous release's layout (both
fields) reads the same, through the store, the worker's runner, the admin API, the CLI and the lost-task sweep."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask
from flask.testing import FlaskClient

from config import Policy, Settings
from handlers.timings import record_job
from runnerguard.queue import runner, tasks
from runnerguard.queue.deps import Deps
from runnerguard.services import lost_tasks
from runnerguard.store import deliveries, jobstore, keys
from runnerguard.store.deliveries import Delivery
from tests import legacy_v2_done
from tests.helpers import admin_headers
from tests.test_delivery_v2 import sample, store
from tests.test_lost_tasks import lose, sweep
from tests.test_timings import deliver, job_events

API = admin_headers()
TASKS = ("timings", "rollback", "causes")  # what a completed workflow_job delivery runs
QUEUES = {spec.name: spec.queue for spec in (tasks.TIMINGS, tasks.ROLLBACK_CHECK, tasks.ATTRIBUTE)}


def completed(job_id: int, conclusion: str = "success") -> dict[str, Any]:
    return job_events(job_id, conclusion, created=time.time() - 3600)[-1]


def task_fields(client: redis.Redis, guid: str) -> dict[str, str]:
    raw = client.hgetall(keys.delivery(guid))
    return {k.decode(): v.decode() for k, v in raw.items() if k.startswith(b"task:")}


def marks(client: redis.Redis, guid: str) -> list[str]:
    return sorted(k.decode().split(":", 1)[1] for k in client.hkeys(keys.delivery(guid)) if k.startswith(b"@"))


def loaded(client: redis.Redis, guid: str) -> Delivery:
    delivery = deliveries.load(client, guid)
    assert delivery is not None
    return delivery


def test_a_done_task_is_its_mark_alone_and_a_failure_before_it_is_dropped(redis_client: redis.Redis) -> None:
    store(redis_client, sample("one-1", 1000.0, tasks=("timings", "prewarm@prewarm.host-1")))
    deliveries.mark_task(redis_client, "one-1", "timings", deliveries.DONE, now=1001.0)
    assert task_fields(redis_client, "one-1") == {} and marks(redis_client, "one-1") == ["timings"]
    assert loaded(redis_client, "one-1").task_states == {"timings": "done"}
    assert loaded(redis_client, "one-1").state == deliveries.RUNNING  # the other task is still queued
    deliveries.mark_task(redis_client, "one-1", "prewarm@prewarm.host-1", deliveries.FAILED, error="Boom: no", now=1002)
    assert task_fields(redis_client, "one-1") == {"task:prewarm@prewarm.host-1": "failed: Boom: no"}  # as before
    assert loaded(redis_client, "one-1").state == deliveries.FAILED
    deliveries.mark_task(redis_client, "one-1", "prewarm@prewarm.host-1", deliveries.DONE, now=1003.0)  # the retry
    assert task_fields(redis_client, "one-1") == {}  # the failure no longer outranks the done mark
    delivery = loaded(redis_client, "one-1")
    assert delivery.state == deliveries.DONE and delivery.errors == {}
    assert delivery.summary()["tasks"] == {"timings": "done", "prewarm@prewarm.host-1": "done"}
    assert [(a["task"], a["state"]) for a in deliveries.attempts(redis_client, "one-1")] == [
        ("timings", "done"), ("prewarm@prewarm.host-1", "failed"), ("prewarm@prewarm.host-1", "done")]
    assert redis_client.object("encoding", keys.delivery("one-1")) == b"listpack"


def test_a_replays_queued_outranks_older_marks_until_the_next_done(redis_client: redis.Redis) -> None:
    store(redis_client, sample("rep-1", 1000.0, tasks=("timings", "rollback")))
    for n, task in enumerate(("timings", "rollback")):
        deliveries.mark_task(redis_client, "rep-1", task, deliveries.DONE, now=1001.0 + n)
    assert loaded(redis_client, "rep-1").state == deliveries.DONE
    pipe = redis_client.pipeline(transaction=True)
    deliveries.reset_tasks(pipe, "rep-1", ["timings", "rollback"])
    pipe.execute()
    assert loaded(redis_client, "rep-1").task_states == {"timings": "queued", "rollback": "queued"}
    assert loaded(redis_client, "rep-1").state == deliveries.QUEUED
    deliveries.mark_task(redis_client, "rep-1", "timings", deliveries.DONE, now=1010.0)
    assert loaded(redis_client, "rep-1").task_states == {"timings": "done", "rollback": "queued"}
    assert loaded(redis_client, "rep-1").state == deliveries.RUNNING
    deliveries.mark_task(redis_client, "rep-1", "rollback", deliveries.DONE, now=1011.0)
    assert loaded(redis_client, "rep-1").state == deliveries.DONE
    assert task_fields(redis_client, "rep-1") == {} and marks(redis_client, "rep-1") == [
        "rollback", "rollback", "timings", "timings"]


def write_both_ways(client: redis.Redis, guid: str, *, old: bool) -> None:
    """The same history (timings failed then done, rollback done, causes failed), in either release's layout."""
    store(client, sample(guid, 1000.0, tasks=("timings", "rollback", "causes")))
    done: Callable[..., None] = (
        (lambda task, now: legacy_v2_done.mark_done(client, guid, task, now=now)) if old
        else (lambda task, now: deliveries.mark_task(client, guid, task, deliveries.DONE, now=now)))
    deliveries.mark_task(client, guid, "timings", deliveries.FAILED, error="ConnectionError: gone", now=1001.0)
    done("timings", 1002.0)
    done("rollback", 1003.0)
    deliveries.mark_task(client, guid, "causes", deliveries.FAILED, error="not found", now=1004.0)


def test_the_previous_releases_layout_reads_as_the_new_one(redis_client: redis.Redis) -> None:
    write_both_ways(redis_client, "old-1", old=True)
    write_both_ways(redis_client, "new-1", old=False)
    assert set(task_fields(redis_client, "old-1")) == {"task:timings", "task:rollback", "task:causes"}
    assert set(task_fields(redis_client, "new-1")) == {"task:causes"}
    old, new = loaded(redis_client, "old-1"), loaded(redis_client, "new-1")
    expected = {"timings": "done", "rollback": "done", "causes": "failed: not found"}
    assert old.task_states == new.task_states == expected
    assert {**old.summary(), "guid": "-"} == {**new.summary(), "guid": "-"}
    assert old.state == deliveries.FAILED and old.errors == {"causes": "not found"}
    assert deliveries.attempts(redis_client, "old-1") == deliveries.attempts(redis_client, "new-1")
    # The raw-hash readers (devtools' reliability checks) take the same one function.
    assert deliveries.task_states(redis_client.hgetall(keys.delivery("old-1"))) == expected  # type: ignore[arg-type]
    # The sweep's batch reader gives each delivery's states in order, and none for one that is gone.
    assert deliveries.states_many(redis_client, ["new-1", "gone-1", "old-1"]) == [expected, {}, expected]
    # An old `task:<name>=done`, reset by a replay and done again by this release, leaves the mark alone.
    pipe = redis_client.pipeline(transaction=True)
    deliveries.reset_tasks(pipe, "old-1", ["timings", "rollback", "causes"])
    pipe.execute()
    assert loaded(redis_client, "old-1").state == deliveries.QUEUED
    for n, task in enumerate(("timings", "rollback", "causes")):
        deliveries.mark_task(redis_client, "old-1", task, deliveries.DONE, now=1010.0 + n)
    assert loaded(redis_client, "old-1").state == deliveries.DONE and task_fields(redis_client, "old-1") == {}


def test_a_damaged_mark_name_spoils_no_state(redis_client: redis.Redis) -> None:
    store(redis_client, sample("bad-1", 1000.0, tasks=("timings",)))
    redis_client.hset(keys.delivery("bad-1"), mapping={b"@k0:\xff\xfe": b"", b"@nocolon": b""})
    assert loaded(redis_client, "bad-1").state == deliveries.QUEUED  # readable; names no task of the delivery
    deliveries.mark_task(redis_client, "bad-1", "timings", deliveries.DONE, now=1001.0)
    assert loaded(redis_client, "bad-1").state == deliveries.DONE


def show(app: Flask, guid: str) -> dict[str, Any]:
    result = app.test_cli_runner().invoke(args=["deliveries", "show", guid])
    assert result.exit_code == 0, result.output
    shown: dict[str, Any] = json.loads(result.output)
    return shown


def test_the_worker_writes_marks_only_and_the_api_and_cli_show_done_then_replayed(
        app: Flask, client: FlaskClient, redis_client: redis.Redis, drain) -> None:  # type: ignore[no-untyped-def]
    deliver(client, completed(801, "failure"), "run-1")
    assert drain() == 3
    assert task_fields(redis_client, "run-1") == {} and marks(redis_client, "run-1") == sorted(TASKS)
    api = client.get("/api/deliveries/run-1", headers=API).get_json()
    assert api["state"] == "done" and api["tasks"] == dict.fromkeys(TASKS, "done")
    cli = show(app, "run-1")
    assert cli["state"] == "done" and cli["tasks"] == dict.fromkeys(TASKS, "done")
    assert client.post("/api/deliveries/run-1/replay", headers=API).status_code == 202
    assert task_fields(redis_client, "run-1") == {f"task:{t}": "queued" for t in TASKS}
    assert client.get("/api/deliveries/run-1", headers=API).get_json()["state"] == "queued"
    assert show(app, "run-1")["tasks"] == dict.fromkeys(TASKS, "queued")
    assert drain() == 3
    assert task_fields(redis_client, "run-1") == {} and marks(redis_client, "run-1") == sorted(TASKS * 2)
    api = client.get("/api/deliveries/run-1", headers=API).get_json()
    assert api["state"] == "done" and len(api["attempts"]) == 6
    assert client.get("/api/deliveries?state=done", headers=API).get_json()["deliveries"][0]["guid"] == "run-1"


def test_a_task_failed_then_retried_by_the_runner_is_done(client: FlaskClient, redis_client: redis.Redis,
                                                         settings: Settings) -> None:
    deliver(client, completed(802), "flaky-1")
    calls: list[int] = []

    def flaky(delivery: Delivery, *, redis: redis.Redis, settings: Settings, policy: Policy,
              clock: Callable[[], float]) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("reset by peer")  # transient: RQ would retry it
        # the real body: its done goes in the timeline's own atomic write (a Lua script), HDEL included
        return record_job(delivery, redis=redis, settings=settings, policy=policy, clock=clock)

    deps = Deps.from_settings(settings, client=redis_client)
    try:
        runner.run_delivery_task(tasks.TIMINGS, flaky, "flaky-1", deps)
    except ConnectionError:
        pass
    else:
        raise AssertionError("the first run must fail")
    first = loaded(redis_client, "flaky-1")
    assert first.state == deliveries.FAILED and first.errors == {"timings": "ConnectionError: reset by peer"}
    runner.run_delivery_task(tasks.TIMINGS, flaky, "flaky-1", deps)
    again = loaded(redis_client, "flaky-1")
    assert again.task_states == {"timings": "done"} and task_fields(redis_client, "flaky-1") == {}
    assert [(a["task"], a["state"]) for a in deliveries.attempts(redis_client, "flaky-1")] == [
        ("timings", "failed"), ("timings", "done")]
    assert len(jobstore.find(redis_client)) == 1


def test_the_lost_task_sweep_skips_done_tasks_of_either_layout_and_finds_lost_ones(
        client: FlaskClient, redis_client: redis.Redis, drain) -> None:  # type: ignore[no-untyped-def]
    for n, guid in enumerate(("done-new", "done-old", "reset-1")):
        deliver(client, completed(810 + n), guid)
    drain()
    # done-old as the previous release left it: `task:<name>=done` beside each mark
    for task in TASKS:
        legacy_v2_done.mark_done(redis_client, "done-old", task)
    # reset-1: a replay reset its tasks (queued over the older marks) and its jobs were lost
    pipe = redis_client.pipeline(transaction=True)
    deliveries.reset_tasks(pipe, "reset-1", list(TASKS))
    pipe.execute()
    for guid in ("done-new", "done-old", "reset-1"):
        for task in TASKS:
            lose(redis_client, guid, task, QUEUES[task])
    assert lost_tasks.unfinished(loaded(redis_client, "done-new")) == []
    assert lost_tasks.unfinished(loaded(redis_client, "done-old")) == []
    assert lost_tasks.lost_tasks(redis_client, loaded(redis_client, "reset-1")) == list(TASKS)
    received = loaded(redis_client, "reset-1").received_at
    assert sweep(redis_client, received + 700) == ["reset-1"]
    drain()
    assert loaded(redis_client, "reset-1").state == deliveries.DONE and task_fields(redis_client, "reset-1") == {}
    assert sweep(redis_client, received + 700) == []
