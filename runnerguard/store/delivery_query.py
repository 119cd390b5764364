"""Find recorded deliveries by time, event, action, repo and state, a page at a time, with an opaque cursor."""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import redis

from runnerguard.domain import timeparse
from runnerguard.errors import InvalidInput
from runnerguard.store import deliveries, delivery_index
from runnerguard.store.deliveries import Delivery

FILTER_KEYS = ("since", "until", "event", "action", "repo", "state")
STATES = ("queued", "running", "done", "failed", "ignored")
SCAN_BATCH = 200


class QueryError(InvalidInput):
    """A filter or cursor from outside is malformed; the message says which and why."""


def parse_when(raw: object, key: str, *, now: float) -> float | None:
    """ISO 8601 with a zone, epoch seconds, or relative ('72h' = 72 hours ago)."""
    try:
        return timeparse.parse_when(raw, key, now=now)
    except timeparse.TimeError as exc:
        raise QueryError(str(exc)) from None


@dataclass(frozen=True)
class DeliveryFilter:
    since: float | None = None
    until: float | None = None
    event: str | None = None
    action: str | None = None
    repo: str | None = None
    state: str | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, object], *, now: float | None = None) -> DeliveryFilter:
        now = time.time() if now is None else now
        unknown = sorted(set(raw) - set(FILTER_KEYS) - {"cursor", "limit"})
        if unknown:
            raise QueryError(f"unknown filter {unknown[0]!r} (allowed: {', '.join(FILTER_KEYS)})")
        text: dict[str, str | None] = {}
        for key in ("event", "action", "repo", "state"):
            value = raw.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > 200):
                raise QueryError(f"{key} must be a string of at most 200 characters")
            text[key] = value or None
        if text["state"] and text["state"] not in STATES:
            raise QueryError(f"state must be one of {', '.join(STATES)}")
        since, until = parse_when(raw.get("since"), "since", now=now), parse_when(raw.get("until"), "until", now=now)
        if since is not None and until is not None and since > until:
            raise QueryError("since is after until")
        return cls(since=since, until=until, **text)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    def matches(self, delivery: Delivery) -> bool:
        return (
            (self.event is None or delivery.event == self.event)
            and (self.action is None or delivery.action == self.action)
            and (self.repo is None or (delivery.repo or "").lower() == self.repo.lower())
            and (self.state is None or delivery.state == self.state)
        )


def encode_cursor(score: float, guid: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([score, guid]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        score, guid = json.loads(raw)
        if not isinstance(score, int | float) or not isinstance(guid, str):
            raise TypeError
        return float(score), guid
    except (ValueError, TypeError):
        raise QueryError("cursor is not one this API gave out") from None


def scan(client: redis.Redis, query: DeliveryFilter, *, after: tuple[float, str] | None = None) -> Iterator[Delivery]:
    """Matching deliveries, oldest first by received time (stable while new ones arrive)."""
    low = after[0] if after else query.since
    guids: list[str] = []
    # (received_at, guid) is a total order to resume from: equal times are ordered by guid.
    for entry in delivery_index.entries(client, low=low, high=query.until):
        if after and entry <= after:
            continue
        guids.append(entry[1])
        if len(guids) == SCAN_BATCH:
            yield from (d for d in load_many(client, guids) if query.matches(d))
            guids = []
    yield from (d for d in load_many(client, guids) if query.matches(d))


def load_many(client: redis.Redis, guids: list[str]) -> list[Delivery]:
    """The deliveries still recorded (one may have expired since it was indexed), in one round trip."""
    return [delivery for delivery in deliveries.load_many(client, guids) if delivery is not None]


def page(
    client: redis.Redis, query: DeliveryFilter, *, cursor: str | None, limit: int
) -> tuple[list[Delivery], str | None]:
    after = decode_cursor(cursor) if cursor else None
    items: list[Delivery] = []
    for delivery in scan(client, query, after=after):
        items.append(delivery)
        if len(items) == limit:
            break
    next_cursor = encode_cursor(items[-1].received_at, items[-1].guid) if len(items) == limit else None
    return items, next_cursor


def latest(client: redis.Redis, count: int) -> list[Delivery]:
    """The newest `count` deliveries, newest first."""
    guids = [guid for _at, guid in itertools.islice(delivery_index.entries(client, reverse=True), count)]
    return load_many(client, guids)
