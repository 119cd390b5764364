"""Run a batch of queued Redis commands atomically, only if a guard key is absent: one round trip, all or nothing.

The intake needs "dedupe, record and enqueue" as one step. A MULTI/EXEC cannot branch on the dedupe check and a
WATCH costs a second round trip, so the commands are collected on a pipeline that is never executed (whoever builds
them, RQ included, keeps owning its own key formats) and shipped to one Lua script that checks the guard first.
Lua scripts run atomically: a failure part-way leaves nothing half-written for a redelivery to trip over.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import Pipeline

from runnerguard.store import rq_templates

# Both scripts take a few header arguments, then each command as: argc, arg1..argc (see _append_commands).
# One pseudo-command is not Redis's: `@job TEMPLATE JOB_KEY QUEUE_KEY QUEUES_KEY JOB_ID DATA DESCRIPTION AT` enqueues
# an RQ job as RQ's enqueue_job would, its static fields copied from the template hash (store/rq_templates.py)
# instead of sent with every delivery. A script is not rolled back on error, so every template a batch names is
# checked before anything is written (`templates_present`).
# Another, `@digest FIELD EXPIREAT ROOM KEY...`, sets FIELD (value "") in the first KEY holding fewer than ROOM
# fields, the last KEY whatever it holds, and expires that key at EXPIREAT: Redis keeps a hash as a compact
# listpack only up to hash-max-listpack-entries fields (~20 B a 16-byte field; a hashtable ~80 B), so a busy hour's
# body digests spill over more, smaller hashes (store/deliveries.py, `remember_body`). Which key has room is only
# known here, inside the one atomic call; a reader checks every KEY (the guard's hash keys, below).
_RUN_COMMANDS = """
local pos = 3
local function run(count)
  for _ = 1, count do
    local argc = tonumber(ARGV[pos])
    if ARGV[pos + 1] == '@job' then
      local a = pos + 1
      redis.call('HSET', ARGV[a + 2], 'data', ARGV[a + 6], 'description', ARGV[a + 7], 'created_at', ARGV[a + 8],
                 'enqueued_at', ARGV[a + 8], unpack(redis.call('HGETALL', ARGV[a + 1])))
      redis.call('SADD', ARGV[a + 4], ARGV[a + 3])
      redis.call('RPUSH', ARGV[a + 3], ARGV[a + 5])
    elseif ARGV[pos + 1] == '@digest' then
      local a, last = pos + 1, pos + argc
      local room, key = tonumber(ARGV[a + 3]), ARGV[last]
      for level = a + 4, last - 1 do
        if redis.call('HLEN', ARGV[level]) < room then
          key = ARGV[level]
          break
        end
      end
      redis.call('HSET', key, ARGV[a + 1], '')
      redis.call('EXPIREAT', key, ARGV[a + 2])
    else
      redis.call(unpack(ARGV, pos + 1, pos + argc))
    end
    pos = pos + argc + 1
  end
end
local function templates_present(from, count)
  local p, named = from, {}
  for _ = 1, count do
    local argc = tonumber(ARGV[p])
    if ARGV[p + 1] == '@job' then
      named[#named + 1] = ARGV[p + 2]
    end
    p = p + argc + 1
  end
  -- one EXISTS for all (it counts a key named twice twice, so equal means every one is there)
  return #named == 0 or redis.call('EXISTS', unpack(named)) == #named
end
"""

# Header: n_main, n_dup.
_SCRIPT = _RUN_COMMANDS + """
local n_main = tonumber(ARGV[1])
local n_dup = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 1 then
  for _ = 1, n_main do
    pos = pos + tonumber(ARGV[pos]) + 1
  end
  run(n_dup)
  return 0
end
if not templates_present(pos, n_main) then
  return redis.error_reply('NOTEMPLATE an RQ job template is missing')
end
run(n_main)
return 1
"""

# Header: n_guards, gated (1: the key after the guards must exist), n_main, n_dup, n_refused, hash field, n_hashes;
# then the three batches. The last n_hashes guard keys are hashes that guard with the hash field (HEXISTS on each:
# the spill levels of `@digest`), not as keys. Answers 1 (main ran), 0 (a guard exists: on_duplicate ran) or
# 2 (gated, permit missing: on_refused ran).
_GUARDED_SCRIPT = _RUN_COMMANDS + """
pos = 8
local n_guards = tonumber(ARGV[1])
local n_main, n_dup = tonumber(ARGV[3]), tonumber(ARGV[4])
local n_keys = n_guards - tonumber(ARGV[7])
local function skip(count)
  for _ = 1, count do
    pos = pos + tonumber(ARGV[pos]) + 1
  end
end
local function seen()
  if n_keys > 0 and redis.call('EXISTS', unpack(KEYS, 1, n_keys)) > 0 then
    return true
  end
  for i = n_keys + 1, n_guards do
    if redis.call('HEXISTS', KEYS[i], ARGV[6]) == 1 then
      return true
    end
  end
  return false
end
if seen() then
  skip(n_main)
  run(n_dup)
  return 0
end
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[n_guards + 1]) == 0 then
  skip(n_main + n_dup)
  run(tonumber(ARGV[5]))
  return 2
end
if not templates_present(pos, n_main) then
  return redis.error_reply('NOTEMPLATE an RQ job template is missing')
end
run(n_main)
return 1
"""
APPLIED, DUPLICATE, REFUSED = 1, 0, 2

Arg = bytes | str | int | float


def _append_commands(argv: list[Arg], stack: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> None:
    """A pipeline's queued commands in the scripts' ARGV layout: argc, then the command and its arguments."""
    for args, _options in stack:
        argv.append(len(args))
        argv.extend(args)  # redis-py encodes them once, when it packs the EVALSHA


def new_batch(client: redis.Redis) -> Pipeline:
    """A pipeline used only to collect commands; hand it to `execute_if_absent`, never `execute()` it."""
    pipe = client.pipeline(transaction=False)
    # RQ's enqueue_job(pipeline=...) puts the pipeline in MULTI mode unless it already is, which redis-py refuses
    # once commands are queued; entering it first keeps the order of who adds commands free.
    pipe.multi()
    return pipe


class ConditionalExecutor:
    """Holds the registered script so each call is a single EVALSHA."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._script = client.register_script(_SCRIPT)
        self._guarded = client.register_script(_GUARDED_SCRIPT)
        self._local = threading.local()

    def _thread_client(self) -> redis.Redis:
        # A client with one connection of the shared pool per thread: redis-py then skips the pool's checkout on
        # every call (a fork check and a poll for stale data, two system calls that cost more than packing the call).
        client: redis.Redis | None = getattr(self._local, "client", None)
        if client is None:
            client = redis.Redis(connection_pool=self._client.connection_pool, single_connection_client=True)
            self._local.client = client
        return client

    def execute_if_absent(self, guard_key: str, main: Pipeline, on_duplicate: Pipeline | None = None) -> bool:
        """Run `main`'s commands if `guard_key` does not exist (True), else `on_duplicate`'s (False)."""
        dup_stack = on_duplicate.command_stack if on_duplicate is not None else []
        argv: list[Arg] = [len(main.command_stack), len(dup_stack)]
        _append_commands(argv, main.command_stack)
        _append_commands(argv, dup_stack)
        return bool(self._call(self._script, [guard_key], argv))

    def execute_if_new(
        self, guard_keys: list[str], main: Pipeline, on_duplicate: Pipeline, *, permit_key: str | None = None,
        on_refused: Pipeline | None = None, guard_field: tuple[tuple[str, ...], bytes] | None = None,
    ) -> int:
        """APPLIED when no guard key exists (and `permit_key`, if given, does); DUPLICATE when a guard key exists;
        REFUSED when `permit_key` is missing. Runs `main`, `on_duplicate` or `on_refused` accordingly, atomically.
        `guard_field` (hashes, field): one more guard, a field of any of these hashes (many guards in one key, no
        key each; several hashes for the spill levels a `@digest` writes to)."""
        script_keys, argv = self._guarded_call(guard_keys, main, on_duplicate, permit_key, on_refused,
                                                guard_field=guard_field)
        return int(self._call(self._guarded, script_keys, argv))

    def _call(self, script: Any, script_keys: list[str], argv: list[Arg]) -> Any:
        client = self._thread_client()
        try:
            return script(keys=script_keys, args=argv, client=client)
        except redis.ResponseError as exc:
            if not rq_templates.is_missing(exc):
                raise
            rq_templates.restore(client)  # Redis lost them (a flush, an old copy restored): nothing was written
            return script(keys=script_keys, args=argv, client=client)

    def execute_if_new_replicated(
        self, guard_keys: list[str], main: Pipeline, on_duplicate: Pipeline, *, replicas: int, timeout_ms: int,
        permit_key: str | None = None, on_refused: Pipeline | None = None,
        guard_field: tuple[tuple[str, ...], bytes] | None = None,
    ) -> tuple[int, int]:
        """`execute_if_new`, then WAIT for `replicas` replicas (at most `timeout_ms`), in the same round trip:
        (outcome, how many replicas acknowledged every write of the connection so far).

        WAIT cannot run inside a script, so the two go as one pipeline; WAIT covers the duplicate and refused
        branches too, so an earlier write of the same delivery that a replica never saw is not acknowledged now.
        """
        script_keys, argv = self._guarded_call(guard_keys, main, on_duplicate, permit_key, on_refused,
                                                guard_field=guard_field)
        client = self._thread_client()
        for attempt in (1, 2, 3):
            # Not Script.__call__ on a pipeline: redis-py then sends SCRIPT EXISTS first, a round trip of its own.
            pipe = client.pipeline(transaction=False)
            pipe.execute_command(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                "EVALSHA", self._guarded.sha, len(script_keys), *script_keys, *argv)
            pipe.execute_command("WAIT", replicas, timeout_ms)  # type: ignore[no-untyped-call]
            outcome, acked = pipe.execute(raise_on_error=False)
            if isinstance(outcome, redis.exceptions.NoScriptError) and attempt < 3:
                client.script_load(self._guarded.script)  # a fresh primary after a failover, or SCRIPT FLUSH
                continue
            if isinstance(outcome, Exception) and rq_templates.is_missing(outcome) and attempt < 3:
                rq_templates.restore(client)  # the script wrote nothing; the WAIT after it covered no new write
                continue
            for answer in (outcome, acked):
                if isinstance(answer, Exception):
                    raise answer
            return int(outcome), int(acked)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    @staticmethod
    def _guarded_call(guard_keys: list[str], main: Pipeline, on_duplicate: Pipeline, permit_key: str | None,
                      on_refused: Pipeline | None, *, guard_field: tuple[tuple[str, ...], bytes] | None = None,
                      ) -> tuple[list[str], list[Arg]]:
        refused_stack = on_refused.command_stack if on_refused is not None else []
        hashes, field = guard_field if guard_field is not None else ((), b"")
        if guard_field is not None and (not field or not hashes or isinstance(hashes, str)):
            # A str would pass for a tuple of one-letter key names; an empty field could never be set by HSET.
            raise ValueError(f"a guard field needs a non-empty field and a tuple of hash keys, not {guard_field!r}")
        guards = [*guard_keys, *hashes]
        argv: list[Arg] = [len(guards), 1 if permit_key is not None else 0, len(main.command_stack),
                           len(on_duplicate.command_stack), len(refused_stack), field, len(hashes)]
        for stack in (main.command_stack, on_duplicate.command_stack, refused_stack):
            _append_commands(argv, stack)
        return [*guards, *([permit_key] if permit_key is not None else [])], argv


# Header: expected value ("" for a missing key), number of commands.
# Answers {1} once applied, or {0, current value} (nil for a missing key) so the caller can merge again at once.
_CAS_SCRIPT = _RUN_COMMANDS + """
local current = redis.call('GET', KEYS[1])
if (current or '') ~= ARGV[1] then
  return {0, current}
end
run(tonumber(ARGV[2]))
return {1}
"""


class CompareAndSet:
    """Run queued commands only if a key still holds what we expect: optimistic locking in one round trip.

    WATCH / GET / MULTI / EXEC costs three round trips after the read; this costs one, and a caller with a good
    guess of the value needs no read at all: a wrong guess answers the current value, to merge with and try again.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._script = client.register_script(_CAS_SCRIPT)

    def execute_if_unchanged(self, key: str, expected: bytes | None, batch: Pipeline) -> tuple[bool, bytes | None]:
        """(True, None) once `batch` ran; (False, the key's current value or None) if the key did not hold it."""
        argv: list[Arg] = [expected or b"", len(batch.command_stack)]
        _append_commands(argv, batch.command_stack)
        answer = self._script(keys=[key], args=argv, client=self._client)
        if answer[0] == 1:
            return True, None
        return False, answer[1] if len(answer) > 1 else None


# Reads over many small sorted sets at once (the buckets of store/time_buckets.py). A command per bucket costs the
# client more than Redis (packing and parsing ~150 replies for a day); one script call per day of buckets does not.
# ARGV: op ("count", "range" or "rev"), then the score bounds (min, max; for "rev" max, min). Range replies are
# flat member, score lists, the buckets' replies one after the other in KEYS order. Flagged no-writes (Redis 7):
# it may run on a replica and on a full Redis (maxmemory reached), as the commands it stands for may.
_BUCKETS_SCRIPT = """#!lua flags=no-writes
local op = ARGV[1]
if op == 'count' then
  local n = 0
  for i = 1, #KEYS do
    n = n + redis.call('ZCOUNT', KEYS[i], ARGV[2], ARGV[3])
  end
  return n
end
local out = {}
for i = 1, #KEYS do
  local reply
  if op == 'rev' then
    reply = redis.call('ZRANGE', KEYS[i], ARGV[2], ARGV[3], 'BYSCORE', 'REV', 'WITHSCORES')
  else
    reply = redis.call('ZRANGE', KEYS[i], ARGV[2], ARGV[3], 'BYSCORE', 'WITHSCORES')
  end
  for j = 1, #reply do
    out[#out + 1] = reply[j]
  end
end
return out
"""


# Counts over time buckets whose key names the script builds itself (`prefix .. start`, the start in decimal as
# Python's str(int) writes it) from a few numbers a run of buckets, instead of the client naming each: building and
# packing ~300 key names cost the failure-rate trigger more than Redis's work. Only a single Redis or Sentinel runs
# these (no Cluster), so a key the script computes needs no KEYS slot; a key of the client's (an old whole set, a
# bucket counted by score) still goes in KEYS.
# ARGV: width, n_ranged, n_runs, n_sums; then n_ranged bound pairs (min, max) for KEYS in order (ZCOUNT each);
# then per run: prefix, first start, dense, sparse (its dense first buckets by ZCARD, the sparse after them, which
# the caller expects to be missing, by one EXISTS of them all first: a command a key costs more than what the key
# holds); then per sum: run (0-based), begin, end: the ZCARDs of that run's buckets begin..end-1 (0-based) summed,
# by running sums, so a bucket many windows cover is counted once. Answers the ZCOUNTs, then the sums.
_BUCKET_TALLY_SCRIPT = """#!lua flags=no-writes
local fmt, call = string.format, redis.call  -- locals: a global's lookup a bucket is ~5% of the script
local width = tonumber(ARGV[1])
local n_ranged, n_runs, n_sums = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out, at = {}, 4
for i = 1, n_ranged do
  out[i] = call('ZCOUNT', KEYS[i], ARGV[at + 1], ARGV[at + 2])
  at = at + 2
end
local runs = {}
for r = 1, n_runs do
  local prefix, first = ARGV[at + 1], tonumber(ARGV[at + 2])
  local dense, sparse = tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4])
  at = at + 4
  local running, total = {[0] = 0}, 0
  for i = 1, dense do
    total = total + call('ZCARD', fmt('%s%d', prefix, first + (i - 1) * width))
    running[i] = total
  end
  if sparse > 0 then
    local names = {}
    for i = 1, sparse do
      names[i] = fmt('%s%d', prefix, first + (dense + i - 1) * width)
    end
    local present = call('EXISTS', unpack(names)) > 0
    for i = 1, sparse do
      if present then
        total = total + call('ZCARD', names[i])
      end
      running[dense + i] = total
    end
  end
  runs[r] = running
end
for q = 1, n_sums do
  local running = runs[tonumber(ARGV[at + 1]) + 1]
  out[n_ranged + q] = running[tonumber(ARGV[at + 3])] - running[tonumber(ARGV[at + 2])]
  at = at + 3
end
return out
"""
# Buckets one call may name: bounds how long the script holds Redis (~0.3 us a bucket) and Lua's unpack of a
# run's missing buckets (its C stack takes ~8,000 values). Longer spans go in more calls (time_buckets.tally).
MAX_BUCKETS = 4608


@dataclass(frozen=True)
class BucketRun:
    """Buckets `prefix + str(first + i * width)` for i < dense + sparse (width: the call's): the first `dense`
    counted by ZCARD, the `sparse` after them expected missing (one EXISTS of them all tells)."""
    prefix: str
    first: int
    dense: int
    sparse: int


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_bucket_tally(width: int, runs: Sequence[BucketRun], sums: Sequence[tuple[int, int, int]]) -> None:
    """Refuse what the script would misread or loop over for long, before it runs: it names keys from these."""
    if not _is_int(width) or width <= 0:
        raise ValueError(f"a bucket width is a positive int, not {width!r}")
    total = 0
    for run in runs:
        if not isinstance(run.prefix, str) or not run.prefix or not _is_int(run.first):
            raise ValueError(f"a bucket run needs a non-empty str prefix and an int first start: {run!r}")
        if not (_is_int(run.dense) and _is_int(run.sparse)) or run.dense < 0 or run.sparse < 0:
            raise ValueError(f"a bucket run's dense and sparse counts are ints >= 0: {run!r}")
        total += run.dense + run.sparse
    if total > MAX_BUCKETS:
        raise ValueError(f"{total} buckets in one call: at most {MAX_BUCKETS} (split the runs over more calls)")
    for which, begin, end in sums:
        if not all(map(_is_int, (which, begin, end))) or not 0 <= which < len(runs):
            raise ValueError(f"a sum names one of the {len(runs)} runs by index: {(which, begin, end)!r}")
        run = runs[which]
        if not 0 <= begin <= end <= run.dense + run.sparse:
            raise ValueError(f"a sum's buckets {begin}..{end} are outside its run of "
                             f"{run.dense + run.sparse}: {run!r}")


class SortedSetsRead:
    """ZCOUNT or ZRANGE BYSCORE over many sorted sets in one call (read only)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._script = client.register_script(_BUCKETS_SCRIPT)
        self._tally = client.register_script(_BUCKET_TALLY_SCRIPT)

    def tally(self, ranged: Sequence[tuple[str, Arg, Arg]], runs: Sequence[BucketRun],
              sums: Sequence[tuple[int, int, int]], *, width: int) -> list[int]:
        """ZCOUNT low high of each (name, low, high) in `ranged`, then each (run, begin, end) of `sums`: the
        ZCARDs of buckets begin..end-1 of `runs[run]` summed. The script names the runs' buckets itself."""
        _check_bucket_tally(width, runs, sums)
        if not ranged and not sums:
            return []
        args: list[Arg] = [width, len(ranged), len(runs), len(sums)]
        for _, low, high in ranged:
            args += [low, high]
        for run in runs:
            args += [run.prefix, run.first, run.dense, run.sparse]
        for which, begin, end in sums:
            args += [which, begin, end]
        names = [name for name, _, _ in ranged]
        return [int(n) for n in self._tally(keys=names, args=args, client=self._client)]

    def count(self, names: list[str], low: Arg, high: Arg) -> int:
        return int(self._script(keys=names, args=["count", low, high], client=self._client)) if names else 0

    def pairs(self, names: list[str], low: Arg, high: Arg, *, reverse: bool = False) -> list[tuple[bytes, float]]:
        """(member, score) of each set in turn, ascending within a set (descending with `reverse`)."""
        if not names:
            return []
        args: list[Arg] = ["rev", high, low] if reverse else ["range", low, high]
        flat = self._script(keys=names, args=args, client=self._client)
        return list(zip(flat[0::2], map(float, flat[1::2]), strict=True))
