"""The periodic tasks run once per slot across several schedulers (hosts), never twice: real worker.py processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import redis
from rq.cron import get_cron_job_history_key

from runnerguard.queue import tasks
from runnerguard.store import cron_slots
from tests.helpers import SECRET

ROOT = Path(__file__).resolve().parents[1]
EVERY = 2
PERIODIC = (tasks.SWEEP, tasks.TRIM, tasks.WARM_DASHBOARD)


def test_a_slot_is_claimed_once_whoever_asks(redis_client: redis.Redis) -> None:
    assert cron_slots.claim(redis_client, "t", 7, interval=60, owner="a")
    assert not cron_slots.claim(redis_client, "t", 7, interval=60, owner="b")
    assert cron_slots.owner(redis_client, "t", 7) == "a"
    assert cron_slots.claim(redis_client, "t", 8, interval=60, owner="b")  # the next slot is free again
    assert cron_slots.claim(redis_client, "other", 7, interval=60, owner="b")  # and so is another task's
    assert 60 < redis_client.ttl("rg:cron:t:7") <= 120  # kept past its slot: a lagging clock cannot claim it again


def test_two_schedulers_enqueue_each_periodic_task_once_per_slot(redis_url: str, redis_client: redis.Redis) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNERGUARD_", "REDIS_"))}
    env.update({"GITHUB_WEBHOOK_SECRET": SECRET, "REDIS_URL": redis_url, "RUNNERGUARD_LOG_LEVEL": "WARNING",
                "RUNNERGUARD_PERIODIC_EVERY_SECONDS": str(EVERY)})
    processes = [subprocess.Popen([sys.executable, "worker.py", "--scheduler"], cwd=ROOT,
                                  env={**env, "RUNNERGUARD_HOST": f"host-{i}"}, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True) for i in range(2)]
    try:
        time.sleep(9)
        assert all(p.poll() is None for p in processes), [p.communicate()[0][-2000:] for p in processes]
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        outputs = [p.communicate(timeout=15)[0] for p in processes]
    for spec in PERIODIC:
        history = redis_client.zrange(get_cron_job_history_key(spec.path), 0, -1, withscores=True)
        per_slot = Counter(cron_slots.slot_of(at, EVERY) for _, at in history)
        assert len(per_slot) >= 3, (spec.path, per_slot, outputs)  # the scenario really crossed slots
        assert set(per_slot.values()) == {1}, (spec.path, per_slot)  # and no slot ran twice
        queued = redis_client.lrange(f"rq:queue:{spec.queue}", 0, -1)
        assert len(queued) >= len(history)  # what the history says was enqueued is on the queue (with the others)
