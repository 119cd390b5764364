"""Which scheduler enqueues a periodic task in a given interval slot: the first to claim it, across all hosts."""

from __future__ import annotations

import redis

from runnerguard.store import keys

SLOT_KEPT_INTERVALS = 2  # a slot's claim outlives its slot, so a scheduler whose clock lags cannot claim it again


def slot_of(at: float, interval: int) -> int:
    """The slot number of a moment: slots are `interval` seconds long and start at the epoch, on every host."""
    return int(at // interval)


def claim(client: redis.Redis, task: str, slot: int, *, interval: int, owner: str) -> bool:
    """True for exactly one caller per (task, slot), whoever asks and however many times (SET NX EX)."""
    return bool(client.set(keys.periodic_slot(task, slot), owner, nx=True, ex=interval * SLOT_KEPT_INTERVALS))


def owner(client: redis.Redis, task: str, slot: int) -> str | None:
    value = client.get(keys.periodic_slot(task, slot))
    return value.decode() if isinstance(value, bytes) else None
