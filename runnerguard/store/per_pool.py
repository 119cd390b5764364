"""One object per Redis connection pool, made on first use: codecs and script executors are built once a process."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

import redis

T = TypeVar("T")


class PerPool(Generic[T]):
    """`PerPool(make)(client)`: the object `make` built for `client`'s connection pool, built now if there is none.

    `make` gets a client of its own on the same pool: `client` may be a pipeline, which would only queue commands.
    Weak keys: a pool that is gone (a test's Redis) takes its object with it.
    """

    def __init__(self, make: Callable[[redis.Redis], T]) -> None:
        self._make = make
        self._made: weakref.WeakKeyDictionary[redis.ConnectionPool, T] = weakref.WeakKeyDictionary()

    def __call__(self, client: redis.Redis) -> T:
        pool = client.connection_pool
        found = self._made.get(pool)
        if found is None:
            # Two threads may build one at once: both are equal, the last one stays.
            found = self._made[pool] = self._make(redis.Redis(connection_pool=pool))
        return found

    def forget(self) -> None:
        """Drop every object built so far, as a restarted process starts (the tests' way to restart one)."""
        self._made.clear()
