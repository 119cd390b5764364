"""The bulk replay task body (POST /api/replays queues it)."""

from __future__ import annotations

import redis

from config import Policy
from runnerguard.queue.dispatch import Dispatcher
from runnerguard.queue.routing import Router
from runnerguard.services import replay


def run_bulk_replay(replay_id: str, *, redis: redis.Redis, policy: Policy) -> None:
    replay.run_bulk(redis, Dispatcher(redis, Router(), policy), replay_id)
