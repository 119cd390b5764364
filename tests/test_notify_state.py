"""The notifiers' claim: once per (event, subject) per cooldown, retries of one notice pass, resolved ends it."""

from __future__ import annotations

import time

import redis

from config import parse_policy
from runnerguard.domain.notices import Notice
from runnerguard.services import notify_delivery
from runnerguard.store import notices, notify_state


def claim(client: redis.Redis, notice_id: str, *, event: str = "rollback", subject: str = "pool:gpu",
          resolved: bool = False, cooldown: int = 3600, notifier: str = "slack") -> bool:
    outage = event in ("rollback", "blocked", "host") and not resolved
    return notify_state.claim(client, notifier, notice_id, event=event, subject=subject, resolved=resolved,
                              outage=outage, cooldown=cooldown)


def test_once_per_cooldown_and_a_retry_of_the_same_notice_passes(redis_client: redis.Redis) -> None:
    assert claim(redis_client, "1-0")
    assert claim(redis_client, "1-0")  # RQ retried the delivery task: still this notice's turn
    assert not claim(redis_client, "2-0")  # another crossing within the cooldown
    assert claim(redis_client, "3-0", event="blocked")  # another event of the pool is news
    assert claim(redis_client, "4-0", subject="pool:cpu")  # and so is another pool
    assert claim(redis_client, "5-0", notifier="ops")  # each notifier keeps its own cooldown


def test_the_cooldown_ends(redis_client: redis.Redis) -> None:
    assert claim(redis_client, "1-0", cooldown=1)
    assert not claim(redis_client, "2-0", cooldown=1)
    time.sleep(1.1)
    assert claim(redis_client, "3-0", cooldown=1)


def test_resolved_passes_once_and_only_after_an_announced_outage(redis_client: redis.Redis) -> None:
    assert not claim(redis_client, "1-0", event="healthy", resolved=True)  # nothing was announced
    assert claim(redis_client, "2-0", event="watchdog")  # not an outage: nothing to resolve later
    assert not claim(redis_client, "3-0", event="healthy", resolved=True)
    assert claim(redis_client, "4-0")
    assert claim(redis_client, "5-0", event="healthy", resolved=True)
    assert claim(redis_client, "5-0", event="healthy", resolved=True)  # its retry
    assert not claim(redis_client, "6-0", event="healthy", resolved=True)  # a second healthy: already said
    assert claim(redis_client, "7-0")  # the cooldown was cleared: a new outage is news at once
    assert not claim(redis_client, "8-0", event="host", subject="host:gpu", resolved=True)  # other subject


def test_results_are_counted_and_the_last_error_kept(redis_client: redis.Redis) -> None:
    notify_state.record(redis_client, "slack", notify_state.ERROR, at=10.0, event="rollback", error="HTTP 500: x")
    notify_state.record(redis_client, "slack", notify_state.SENT, at=20.0, event="rollback")
    status = notify_state.status(redis_client, "slack")
    assert (status["last_result"], status["last_sent_at"], status["last_error"], status["last_error_at"]) == \
        ("sent", 20.0, "HTTP 500: x", 10.0)
    assert notify_state.status(redis_client, "nobody") == {}


def test_a_notifier_name_with_a_dot_makes_a_valid_job_id(redis_client: redis.Redis) -> None:
    policy = parse_policy({"notify": [{"kind": "slack", "name": "ops.team", "url_env": "U"}]})
    entry = notices.append(redis_client, Notice(event="healthy", state="healthy", summary="", at=0))
    assert notify_delivery.fan_out(redis_client, policy, entry) == ["ops.team"]
    assert "." not in notify_delivery.send_job_id(entry, "ops.team")
