"""A time index kept as one small sorted set per 10-minute bucket instead of one sorted set of the whole history.

Why: a sorted set of more than 128 members is a skiplist, ~120 bytes a member; one of up to 128 (Redis's
zset-max-listpack-entries) is a listpack, ~30 bytes a member. A bucket of a pool's jobs holds fewer than that up
to ~18,000 jobs a day in the pool; a busier pool's buckets become skiplists (what one whole-history set costs,
plus ~100 bytes a bucket). Retention is each bucket's expiry (its end plus the retention), not a trim per write.

Reads give what one sorted set gave (ZCOUNT, ZRANGE BYSCORE, newest first), exactly at the edges: the buckets a
range covers, each asked for the same score range. The previous release's whole-history set (`legacy`) is read
beside the buckets until its entries age out; every write takes the member out of it, so the two never both
hold a job.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

import redis
from redis.client import Pipeline

from runnerguard.store.atomic import MAX_BUCKETS, Arg, BucketRun, SortedSetsRead

WIDTH = 600
# How far past now a reader looks for scores: GitHub's clock and ours may disagree; a job is never dated later.
FUTURE = 86400
CHUNK = 1008  # buckets read per call (a week): one round trip for most ranges, a bounded reply for the rest
# Where a walk of the whole history stops when no trim has said how far back retention goes (see history_floor).
DEFAULT_HISTORY = 31 * 86400


@dataclass(frozen=True)
class TimeIndex:
    bucket: Callable[[int], str]  # a bucket's start (epoch seconds, a multiple of WIDTH) -> its key
    legacy: str  # the whole-history sorted set the previous release wrote under the index's name
    # where every bucket's key is this and its start (str(int)): `tally` then lets its script name the buckets
    prefix: str | None = None

    def __post_init__(self) -> None:
        # the script builds names from the prefix, the others from `bucket`: a key format changed in one place
        # only would count empty buckets in silence, so it fails here, loudly
        if self.prefix is not None and self.bucket(-WIDTH) != f"{self.prefix}{-WIDTH}":
            raise ValueError(f"bucket(start) is not {self.prefix!r} + str(start): {self.bucket(-WIDTH)!r}")

    def key(self, score: float) -> str:
        return self.bucket(start_of(score))

    def keys(self, low: float, high: float) -> list[str]:
        """The buckets holding scores in [low, high], oldest first."""
        return [self.bucket(start) for start in range(start_of(low), start_of(high) + 1, WIDTH)]


def start_of(score: float) -> int:
    return int(score // WIDTH) * WIDTH


def add(pipe: Pipeline, index: TimeIndex, member: str, score: float, *, retention_seconds: int) -> None:
    key = index.key(score)
    pipe.zadd(key, {member: score})
    # the bucket's last member ages out `retention_seconds` after the bucket ends; a bucket already past its
    # retention is gone at once (what a trim right after the write did)
    pipe.expireat(key, start_of(score) + WIDTH + retention_seconds)
    pipe.zrem(index.legacy, member)


def remove(pipe: Pipeline, index: TimeIndex, member: str, score: float) -> None:
    pipe.zrem(index.key(score), member)
    pipe.zrem(index.legacy, member)


def count(client: redis.Redis, index: TimeIndex, low: float, high: float | None, *, now: float,
          floor: float) -> int:
    """Members with low <= score <= high (None: no upper bound), as ZCOUNT on one sorted set. No bucket before
    `floor` is read (none is left: see history_floor)."""
    top = high if high is not None else now + FUTURE
    names = [*index.keys(max(low, floor), top), index.legacy]
    read = SortedSetsRead(client)
    bound = "+inf" if high is None else high
    return sum(read.count(names[at:at + CHUNK], low, bound) for at in range(0, len(names), CHUNK))


@dataclass(frozen=True)
class Window:
    """One count of `tally`: members of `index` with low <= score <= high (None: no upper bound; `open_low`:
    low < score)."""
    index: TimeIndex
    low: float
    high: float | None = None
    open_low: bool = False


def tally(client: redis.Redis, windows: list[Window], *, now: float, floor: float) -> list[int]:
    """ZCOUNT of each window, exact at its bounds, in one script call for up to MAX_BUCKETS buckets (more: one per
    MAX_BUCKETS). Every window's index needs a `prefix`.

    Only the buckets a bound falls in (two at most; one with no upper bound) and the previous release's whole set
    are counted by score (named by the client); every bucket wholly inside a window is counted whole (ZCARD, O(1)),
    once however many windows cover it (each index's buckets from the lowest to the highest any window needs), and
    those ahead of `now` (FUTURE's day, nearly always missing) by one EXISTS of them all; the script names these
    itself from the index's prefix and the run's first start and counts. No bucket before `floor` is read.
    """
    ranged: list[tuple[str, Arg, Arg]] = []
    spans: dict[TimeIndex, tuple[int, int]] = {}  # per index: the lowest and highest bucket start counted whole
    plans: list[tuple[range, TimeIndex, int, int]] = []  # per window: its places in `ranged`, its whole buckets
    for window in windows:
        if window.index.prefix is None:
            raise ValueError(f"tally names buckets by prefix; this index has none: {window.index.legacy}")
        low: Arg = f"({window.low!r}" if window.open_low else window.low
        high: Arg = "+inf" if window.high is None else window.high
        # a reader whose clock runs ahead of ours (a test's) still looks FUTURE past its own window's start
        top = window.high if window.high is not None else max(now, window.low) + FUTURE
        first, last = start_of(max(window.low, floor)), start_of(top)
        cut = {first} if window.high is None else {first, last}  # with no upper bound the last bucket is inside
        edges = [window.index.legacy, *(window.index.bucket(s) for s in sorted(cut) if first <= s <= last)]
        inner = (first + WIDTH, last if window.high is None else last - WIDTH)
        if inner[0] <= inner[1]:
            lowest, highest = spans.get(window.index, inner)
            spans[window.index] = (min(lowest, inner[0]), max(highest, inner[1]))
        plans.append((range(len(ranged), len(ranged) + len(edges)), window.index, *inner))
        ranged += [(name, low, high) for name in edges]
    calls = _Calls()
    for entry in ranged:
        calls.add_ranged(entry)
    # each index's span as runs of at most a call's room: per run (call, its place there, first offset, length)
    pieces: dict[TimeIndex, list[tuple[_Call, int, int, int]]] = {}
    now_start = start_of(now)
    for index, (lowest, highest) in spans.items():
        n = (highest - lowest) // WIDTH + 1
        n_dense = max(0, min(n, (now_start - lowest) // WIDTH + 1))  # up to now: ZCARD; after: one EXISTS
        at = 0
        while at < n:
            call = calls.with_room()
            length = min(n - at, call.room)
            dense = max(0, min(length, n_dense - at))
            call.runs.append(BucketRun(cast(str, index.prefix), lowest + at * WIDTH, dense, length - dense))
            call.room -= length
            pieces.setdefault(index, []).append((call, len(call.runs) - 1, at, length))
            at += length
    # per window: where its counts are, as (call, place in that call's answers)
    parts: list[list[tuple[_Call, int]]] = []
    for edge, index, begin, finish in plans:
        mine = [calls.ranged_at[at] for at in edge]
        if begin <= finish:
            lowest = spans[index][0]
            lo, hi = (begin - lowest) // WIDTH, (finish - lowest) // WIDTH + 1
            for call, which, at, length in pieces[index]:
                if lo < at + length and at < hi:
                    call.sums.append((which, max(lo, at) - at, min(hi, at + length) - at))
                    mine.append((call, len(call.ranged) + len(call.sums) - 1))  # answers: ranged, then sums
        parts.append(mine)
    read = SortedSetsRead(client)
    answers = {id(call): read.tally(call.ranged, call.runs, call.sums, width=WIDTH) for call in calls.all}
    return [sum(answers[id(call)][place] for call, place in mine) for mine in parts]


@dataclass
class _Call:
    """One script call's share of a tally."""
    ranged: list[tuple[str, Arg, Arg]]
    runs: list[BucketRun]
    sums: list[tuple[int, int, int]]
    room: int  # buckets (named by either side) it may still take


class _Calls:
    """Script calls filled in turn, each with at most MAX_BUCKETS keys (the ZCOUNTed and the named)."""

    def __init__(self) -> None:
        self.all: list[_Call] = []
        self.ranged_at: list[tuple[_Call, int]] = []  # per ranged entry: its call and its place in the answers

    def with_room(self) -> _Call:
        if not self.all or self.all[-1].room == 0:
            self.all.append(_Call([], [], [], MAX_BUCKETS))
        return self.all[-1]

    def add_ranged(self, entry: tuple[str, Arg, Arg]) -> None:
        call = self.with_room()
        self.ranged_at.append((call, len(call.ranged)))
        call.ranged.append(entry)
        call.room -= 1


def pairs(client: redis.Redis, index: TimeIndex, low: float, high: float | None, *, now: float, floor: float
          ) -> list[tuple[bytes, float]]:
    """(member, score) with low <= score <= high, ascending, as ZRANGE BYSCORE WITHSCORES on one sorted set."""
    top = high if high is not None else now + FUTURE
    bound = "+inf" if high is None else high
    names = index.keys(max(low, floor), top)
    read = SortedSetsRead(client)
    # buckets are in score order already: their replies one after the other are
    merged = [pair for at in range(0, len(names), CHUNK) for pair in read.pairs(names[at:at + CHUNK], low, bound)]
    legacy = read.pairs([index.legacy], low, bound)
    if legacy:
        merged = list(heapq.merge(merged, legacy, key=lambda pair: pair[1]))
    return merged


def newest_first(client: redis.Redis, index: TimeIndex, low: float | None, *, now: float, floor: float,
                 page: int) -> Iterator[tuple[float, str]]:
    """(score, member) with score >= low (None: the whole history, back to `floor`), newest first, read lazily."""
    stop = max(low, floor) if low is not None else floor
    return heapq.merge(_buckets_descending(client, index, low, stop, now=now),
                       whole_descending(client, index.legacy, low, page), key=lambda pair: -pair[0])


def oldest_first(client: redis.Redis, index: TimeIndex, since: float, *, now: float, floor: float,
                 page: int) -> Iterator[tuple[float, str]]:
    """(score, member) with score >= since, oldest first, read lazily."""
    return heapq.merge(_buckets_ascending(client, index, since, max(since, floor), now=now),
                       whole_ascending(client, index.legacy, since, page), key=lambda pair: pair[0])


def _buckets_descending(client: redis.Redis, index: TimeIndex, low: float | None, stop: float, *, now: float
                        ) -> Iterator[tuple[float, str]]:
    starts = list(range(start_of(now + FUTURE), start_of(stop) - 1, -WIDTH))
    # The future (rarely anything) in one call, then from now back an hour at first, twice as much each time:
    # the newest few jobs of a busy pool are not paid for with a day of its members.
    sizes = [len(range(start_of(now + FUTURE), start_of(now), -WIDTH))]
    while sum(sizes) < len(starts):
        sizes.append(min(CHUNK, 6 * 2 ** (len(sizes) - 1)))
    read = SortedSetsRead(client)
    at = 0
    for size in sizes:
        names = [index.bucket(start) for start in starts[at:at + size]]
        at += size
        for member, score in read.pairs(names, "-inf" if low is None else low, "+inf", reverse=True):
            yield score, member.decode()


def _buckets_ascending(client: redis.Redis, index: TimeIndex, since: float, start: float, *, now: float
                       ) -> Iterator[tuple[float, str]]:
    starts = list(range(start_of(start), start_of(now + FUTURE) + 1, WIDTH))
    read = SortedSetsRead(client)
    for at in range(0, len(starts), CHUNK):
        names = [index.bucket(begin) for begin in starts[at:at + CHUNK]]
        for member, score in read.pairs(names, since, "+inf"):
            yield score, member.decode()


def whole_descending(client: redis.Redis, key: str, low: float | None, page: int) -> Iterator[tuple[float, str]]:
    """(score, member) of one whole sorted set with score >= low, newest first, a page at a time."""
    offset = 0
    while True:
        raw = cast(list[tuple[bytes, float]], client.zrevrangebyscore(
            key, "+inf", "-inf" if low is None else low, start=offset, num=page, withscores=True))
        yield from ((float(score), member.decode()) for member, score in raw)
        if len(raw) < page:
            return
        offset += page


def whole_ascending(client: redis.Redis, key: str, since: float, page: int) -> Iterator[tuple[float, str]]:
    """(score, member) of one whole sorted set with score >= since, oldest first, a page at a time."""
    offset = 0
    while True:
        raw = cast(list[tuple[bytes, float]], client.zrangebyscore(
            key, since, "+inf", start=offset, num=page, withscores=True))
        yield from ((float(score), member.decode()) for member, score in raw)
        if len(raw) < page:
            return
        offset += page


def trim(pipe: Pipeline, index: TimeIndex, *, since: float, cutoff: float) -> None:
    """Retention after it was shortened (buckets expire by the retention they were written with): drop the
    buckets from `since` to the one holding `cutoff`, and that one's members up to it."""
    for start in range(start_of(since), start_of(cutoff), WIDTH):
        pipe.delete(index.bucket(start))
    pipe.zremrangebyscore(index.key(cutoff), "-inf", cutoff)
