"""The durable delivery log: every accepted webhook delivery, raw bytes and all, with its processing state."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from redis.client import Pipeline

from runnerguard.domain.freshness import BODY_DIGEST_BYTES
from runnerguard.store import atomic, delivery_index, keys
from runnerguard.store.atomic import ConditionalExecutor, new_batch
from runnerguard.store.body_codec import BodyCodec, BodyError, frame_dict_id, split_frame
from runnerguard.store.per_pool import PerPool

__all__ = ["BodyError", "Delivery", "Recorder"]

# Per-task states a delivery's tasks move through; the delivery's own state is derived from them.
QUEUED, RUNNING, DONE, FAILED, IGNORED = "queued", "running", "done", "failed", "ignored"
NEW, DUPLICATE, STALE = "new", "duplicate", "stale"  # what Recorder.record_if_unseen did
MAX_ATTEMPTS_KEPT = 50
MAX_ERROR_CHARS = 500
ATTEMPTS_TTL = 30 * 86400  # of the legacy attempts list (read, no longer written)
# Stored format v1 (read, no longer written; tests/legacy_v1.py writes it): the compressed body in chunks small
# enough that Redis keeps the whole hash as one listpack (hash-max-listpack-value, 64 bytes by default). One value
# over it turns the hash into a hashtable that costs ~55 bytes per field more; a separate key for the body would
# cost ~180 bytes more per delivery. Named fields beside it: event, received_at, action, hook_id, target_type,
# target_id, installation_id, repo.
BODY_DICT_FIELD = "zd"  # the dictionary id the body was compressed with (also in the zstd frame header)
BODY_CHUNK_PREFIX = "zb"  # zb0, zb1, ...: the zstd frame, in order
ATTEMPT_PREFIX = "attempt:"  # attempt:<repr(at)>:<task> -> state, or "failed\t<error>": no list key per delivery
# Stored format v2 (issue #18), what `record` writes: the metadata (event, headers, repo, received time) is a JSON
# line compressed in the same zstd frame as the body (it repeats the body's words, so ~50 bytes where the named
# fields took ~170), the frame in fields "0", "1", ... (chunks of body_codec.LISTPACK_CHUNK bytes; Redis keeps such
# names as small integers); the frame header names its dictionary. `tasks` stays as v1 has it (a replay rewrites
# it, tools read it).
# A task done without error is marked by "@<ms, base 36>:<task>" -> "" (~20 bytes instead of ~45); other attempts
# (failures, with their error) keep v1's exact form. Readers take v0, v1 and v2 alike.
# Task states (`task_states`): `task:<name>` holds every state but done (queued by a replay, "failed: <error>");
# a done without error writes only its mark and deletes `task:<name>`, since the mark already says "done" (~20 B
# a task). So a task is `task:<name>` if present, else done if a mark names it, else queued. The previous release
# also wrote `task:<name>=done` beside the mark: read the same.
V2 = 2
V2_FIELDS = tuple(str(n) for n in range(256))  # built once: the names of a body of up to 16 KB compressed
MARK_PREFIX = "@"
# Body-dedupe digests a level hash takes before the next level does. Up to hash-max-listpack-entries fields (512 by
# default; 128 is the sorted sets' default) Redis keeps a hash as one listpack, ~21 B a 16-byte digest; one more
# makes it a hashtable, ~80 B a digest. But a listpack is searched field by field: HEXISTS on 512 costs ~8 us, and
# the guard checks all three levels. 256 keeps every level a listpack (~22-26 B a digest, measured from 1,250 to
# 20,000 digests an hour) at half that search, up to 256 + 16 * 256 + 256 * 256 ~ 70 k digests an hour; 128 would
# search less again but leave the level-2 hashes nearly empty around 3,000 an hour (~29 B a digest, their keys' own
# cost). A Redis configured below it keeps the fuller hashes as hashtables: more bytes, never a missed duplicate.
DIGESTS_PER_HASH = 256


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery as received. `body` is the exact raw bytes GitHub signed."""

    guid: str
    event: str
    body: bytes = field(repr=False)
    received_at: float
    action: str | None = None
    hook_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    installation_id: int | None = None
    repo: str | None = None
    tasks: tuple[str, ...] = ()
    task_states: Mapping[str, str] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """ignored (no task), queued, running, done, or failed (any task failed for good)."""
        if not self.tasks:
            return IGNORED
        states = [self.task_states.get(task, QUEUED) for task in self.tasks]
        if any(s.startswith(FAILED) for s in states):
            return FAILED
        if all(s == DONE for s in states):
            return DONE
        if any(s == RUNNING for s in states) or any(s == DONE for s in states):
            return RUNNING
        return QUEUED

    @property
    def errors(self) -> dict[str, str]:
        return {t: s[len(FAILED) + 2:] for t, s in self.task_states.items() if s.startswith(FAILED)}

    def payload(self) -> Any:
        # orjson, as the intake that accepted the body: several times faster on an 8 KB payload, same results.
        return orjson.loads(self.body)

    def summary(self) -> dict[str, Any]:
        """What the admin API shows (no body)."""
        return {
            "guid": self.guid,
            "event": self.event,
            "action": self.action,
            "repo": self.repo,
            "installation_id": self.installation_id,
            "hook_id": self.hook_id,
            "received_at": self.received_at,
            "state": self.state,
            "tasks": {task: self.task_states.get(task, QUEUED) for task in self.tasks},
            "errors": self.errors,
        }


# One codec per Redis (its active dictionary is read once, when the process first writes or reads a body).
codec_for = PerPool(BodyCodec)


def v2_fields(codec: BodyCodec, delivery: Delivery) -> dict[str, bytes]:
    """The v2 hash of a new delivery: `tasks` and the chunks of one frame holding the metadata line and the body."""
    meta = orjson.dumps([V2, delivery.event, delivery.action, delivery.hook_id, delivery.target_type,
                         delivery.target_id, delivery.installation_id, delivery.repo, delivery.received_at])
    _dict_id, frame = codec.compress(meta + b"\n" + delivery.body)  # orjson never writes a raw newline
    fields = {"tasks": orjson.dumps(list(delivery.tasks))}
    for n, chunk in enumerate(split_frame(frame)):
        fields[V2_FIELDS[n] if n < len(V2_FIELDS) else str(n)] = chunk
    return fields


def record(pipe: Pipeline, delivery: Delivery, *, codec: BodyCodec | None = None) -> None:
    """Queue the commands that store a delivery (for `ConditionalExecutor.execute_if_absent`).

    The delivery gets no TTL of its own: the periodic trim deletes an hour's deliveries with that hour's index list
    once the hour is past the retention (`delivery_index.trim`). A TTL on each of the ~3 keys a job has costs ~40 B
    (Redis's expiry table) that the hour's list already says."""
    key = keys.delivery(delivery.guid)
    pipe.hset(key, mapping=v2_fields(codec or codec_for(pipe), delivery))  # type: ignore[arg-type]  # invariant
    delivery_index.add_on(pipe, delivery.guid, delivery.received_at)


def _text(raw: Mapping[bytes, bytes], name: str) -> str | None:
    value = raw.get(name.encode())
    return value.decode() if value is not None else None


def _body(client: redis.Redis, guid: str, raw: Mapping[bytes, bytes]) -> bytes | None:
    """The raw body of a v0 or v1 record: v0 kept it as is in `body`, v1 compressed in chunks."""
    if b"body" in raw:
        return raw[b"body"]
    dict_id = raw.get(BODY_DICT_FIELD.encode())
    if dict_id is None:
        return None  # only task marks left behind (the delivery itself expired)
    chunks: list[bytes] = []
    prefix = BODY_CHUNK_PREFIX.encode()
    while (chunk := raw.get(prefix + str(len(chunks)).encode())) is not None:
        chunks.append(chunk)
    try:
        return codec_for(client).decompress(int(dict_id), b"".join(chunks))
    except BodyError as exc:
        raise BodyError(f"delivery {guid}: {exc}") from None


def _v2_chunks(raw: Mapping[bytes, bytes]) -> bytes:
    chunks: list[bytes] = []
    while (chunk := raw.get(str(len(chunks)).encode())) is not None:
        chunks.append(chunk)
    return b"".join(chunks)


def _load_v2(client: redis.Redis, guid: str, raw: Mapping[bytes, bytes]) -> Delivery:
    frame = _v2_chunks(raw)
    try:
        content = codec_for(client).decompress(frame_dict_id(frame), frame)
    except BodyError as exc:
        raise BodyError(f"delivery {guid}: {exc}") from None
    line, _, body = content.partition(b"\n")
    try:
        meta = orjson.loads(line)
        version, event, action, hook_id, target_type, target_id, installation_id, repo, received_at = meta
        texts = (action, hook_id, target_type, target_id, repo)
        if (version != V2 or not isinstance(event, str) or not isinstance(received_at, int | float)
                or not all(t is None or isinstance(t, str) for t in texts)
                or not (installation_id is None or isinstance(installation_id, int))):
            raise ValueError(meta)
        tasks = tuple(orjson.loads(raw.get(b"tasks", b"[]")))
    except (ValueError, TypeError):
        raise BodyError(f"delivery {guid}: stored metadata is corrupted") from None
    return Delivery(guid=guid, event=event, body=body, received_at=float(received_at), action=action,
                    hook_id=hook_id, target_type=target_type, target_id=target_id,
                    installation_id=installation_id, repo=repo, tasks=tasks, task_states=task_states(raw))


def task_states(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    """Each task's state from a delivery's hash (HGETALL), the one way to read them: `task:<name>` when present,
    else done when a done mark names the task; a task in neither is absent (queued)."""
    states: dict[str, str] = {}
    mark = MARK_PREFIX.encode()
    for name, value in raw.items():
        if name.startswith(b"task:"):
            states[name[len(b"task:"):].decode()] = value.decode()  # wins over a mark, whichever comes first
        elif name.startswith(mark):
            _when, colon, task = name.partition(b":")
            if colon:
                # A damaged name matches no task of the delivery; attempts() is the reader that reports it.
                states.setdefault(task.decode(errors="replace"), DONE)
    return states


def load(client: redis.Redis, guid: str) -> Delivery | None:
    """The delivery as received, or None; BodyError if its stored body cannot be restored byte for byte."""
    raw: dict[bytes, bytes] = client.hgetall(keys.delivery(guid))  # type: ignore[assignment]
    return _from_hash(client, guid, raw)


def load_many(client: redis.Redis, guids: Sequence[str]) -> list[Delivery | None]:
    """`load` of each, in one round trip (a sweep over an hour of deliveries made one per delivery before)."""
    pipe = client.pipeline(transaction=False)
    for guid in guids:
        pipe.hgetall(keys.delivery(guid))
    return [_from_hash(client, guid, raw) for guid, raw in zip(guids, pipe.execute(), strict=True)]


def _from_hash(client: redis.Redis, guid: str, raw: dict[bytes, bytes]) -> Delivery | None:
    if not raw:
        return None
    if b"0" in raw:
        return _load_v2(client, guid, raw)
    body = _body(client, guid, raw)
    if body is None:
        return None
    installation = _text(raw, "installation_id")
    return Delivery(
        guid=guid,
        event=_text(raw, "event") or "",
        body=body,
        received_at=float(raw[b"received_at"]),
        action=_text(raw, "action"),
        hook_id=_text(raw, "hook_id"),
        target_type=_text(raw, "target_type"),
        target_id=_text(raw, "target_id"),
        installation_id=int(installation) if installation else None,
        repo=_text(raw, "repo"),
        tasks=tuple(json.loads(raw.get(b"tasks", b"[]"))),
        task_states=task_states(raw),
    )


def states_many(client: redis.Redis, guids: Sequence[str]) -> list[dict[str, str]]:
    """`task_states` of each delivery, in one round trip and without decompressing any body (a sweep that needs
    only the done marks would pay `load_many`'s decompression for each). A delivery that is gone has no states."""
    pipe = client.pipeline(transaction=False)
    for guid in guids:
        pipe.hgetall(keys.delivery(guid))
    return [task_states(raw) for raw in pipe.execute()]


def exists(client: redis.Redis, guid: str) -> bool:
    return bool(client.exists(keys.delivery(guid)))


def mark_task(
    client: redis.Redis, guid: str, task: str, state: str, *, error: str | None = None, now: float | None = None
) -> None:
    """Record a task's state on its delivery, and the attempt in the delivery's history."""
    pipe = client.pipeline(transaction=True)
    mark_task_on(pipe, guid, task, state, error=error, now=now)
    pipe.execute()


def mark_task_on(
    pipe: Pipeline, guid: str, task: str, state: str, *, error: str | None = None, now: float | None = None
) -> None:
    """The commands of `mark_task`, for a caller that writes them together with its own (one round trip)."""
    now = time.time() if now is None else now
    value = f"{FAILED}: {error[:MAX_ERROR_CHARS]}" if state == FAILED and error else state
    short_error = (error or "")[:MAX_ERROR_CHARS]
    if state == DONE and not short_error:
        # The common case, once per task of every delivery: the compact mark (to the millisecond) is the state too.
        # `task:<name>` may hold an earlier failure or a replay's "queued", which would win over the mark: drop it.
        mark = f"{MARK_PREFIX}{_base36(round(now * 1000))}:{task}"
        pipe.hdel(keys.delivery(guid), f"task:{task}")
        pipe.hset(keys.delivery(guid), mark, "")
        return
    attempt = f"{state}\t{short_error}" if short_error else state
    # The attempt is a field of the delivery itself (it expires with it); repr(now) gives the float back exactly.
    pipe.hset(keys.delivery(guid), mapping={f"task:{task}": value, f"{ATTEMPT_PREFIX}{now!r}:{task}": attempt})


def _base36(number: int) -> str:
    digits = ""
    while True:
        number, digit = divmod(number, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[digit] + digits
        if not number:
            return digits


def attempts(client: redis.Redis, guid: str) -> list[dict[str, Any]]:
    """Processing attempts, oldest first (the last MAX_ATTEMPTS_KEPT): legacy list entries, v1 attempt fields and
    v2 done marks; BodyError naming the field if one cannot be read."""
    pipe = client.pipeline(transaction=False)
    pipe.lrange(keys.delivery_attempts(guid), 0, -1)
    pipe.hgetall(keys.delivery(guid))
    legacy, raw = pipe.execute()
    found: list[dict[str, Any]] = [json.loads(a) for a in legacy]
    prefix, mark = ATTEMPT_PREFIX.encode(), MARK_PREFIX.encode()
    for name, value in raw.items():
        try:
            if name.startswith(mark):
                when, task = name[len(mark):].decode().split(":", 1)
                found.append({"task": task, "state": DONE, "at": int(when, 36) / 1000, "error": None})
            elif name.startswith(prefix):
                at, task = name[len(prefix):].decode().split(":", 1)
                state, _, error = value.decode().partition("\t")
                found.append({"task": task, "state": state, "at": float(at), "error": error or None})
        except ValueError:  # UnicodeDecodeError included
            raise BodyError(f"delivery {guid}: attempt field {name[:80]!r} is corrupted") from None
    found.sort(key=lambda a: a["at"])
    return found[-MAX_ATTEMPTS_KEPT:]


def reset_tasks(pipe: Pipeline, guid: str, tasks: Sequence[str]) -> None:
    """Before a replay: the delivery's tasks are queued again."""
    key = keys.delivery(guid)
    pipe.hset(key, "tasks", orjson.dumps(list(tasks)))
    for task in tasks:
        pipe.hset(key, f"task:{task}", QUEUED)


def trim(client: redis.Redis, *, retention_seconds: int, now: float | None = None) -> int:
    """Delete the deliveries past retention with their index entries (the previous release's expire by their TTL)."""
    now = time.time() if now is None else now
    return delivery_index.trim(client, retention_seconds=retention_seconds, now=now)


class NotReplicated(redis.exceptions.RedisError):
    """Fewer replicas than RUNNERGUARD_REDIS_MIN_REPLICAS acknowledged a delivery in time: it may not survive the
    loss of the primary, so it is not acknowledged (503, GitHub redelivers; the redelivery is a duplicate or new)."""


class Recorder:
    """The intake's one round trip: record a delivery, enqueue its tasks and count it, only if its id is new.

    With `min_replicas`, the same round trip WAITs (at most `wait_ms`) for that many replicas to hold the writes.
    """

    def __init__(self, client: redis.Redis, codec: BodyCodec | None = None, *, min_replicas: int = 0,
                 wait_ms: int = 1000) -> None:
        self.client = client
        self._executor = ConditionalExecutor(client)
        self.codec = codec or codec_for(client)
        self.min_replicas = min_replicas
        self.wait_ms = wait_ms

    def record(self, pipe: Pipeline, delivery: Delivery) -> None:
        record(pipe, delivery, codec=self.codec)

    def batch(self) -> Pipeline:
        """Commands collected for one script call (never executed as a pipeline of its own)."""
        return new_batch(self.client)

    def record_if_unseen(
        self, guid: str, digest: str, main: Pipeline, on_duplicate: Pipeline, *, stale: bool = False,
        on_stale: Pipeline | None = None, dated_hour: int | None = None,
    ) -> str:
        """In one round trip: DUPLICATE (`on_duplicate` ran) when the id or the body digest is recorded; STALE
        (`on_stale` ran) when `stale` and the recovery did not ask GitHub to redeliver this id; else NEW (`main`).
        `dated_hour`: the hour bucket a dated body's digest is kept in (`remember_body`); its own key is still checked,
        for bodies recorded before the buckets."""
        guards = [keys.delivery(guid), keys.delivery_body(digest)]
        permit = keys.recovery_asked(guid) if stale else None
        in_bucket = ((keys.body_digest_levels(dated_hour, digest), bytes.fromhex(digest))
                     if dated_hour is not None else None)
        if self.min_replicas <= 0:
            outcome = self._executor.execute_if_new(guards, main, on_duplicate, permit_key=permit, on_refused=on_stale,
                                                    guard_field=in_bucket)
        else:
            outcome, acked = self._executor.execute_if_new_replicated(
                guards, main, on_duplicate, replicas=self.min_replicas, timeout_ms=self.wait_ms, permit_key=permit,
                on_refused=on_stale, guard_field=in_bucket)
            if acked < self.min_replicas:
                raise NotReplicated(f"{acked} of {self.min_replicas} replicas acknowledged within {self.wait_ms} ms")
        return {atomic.APPLIED: NEW, atomic.DUPLICATE: DUPLICATE, atomic.REFUSED: STALE}[outcome]


def remember_body(pipe: Pipeline, digest: str, *, ttl_seconds: int, dated_hour: int | None = None,
                  bucket_expires_at: int | None = None) -> None:
    """Queue the write that makes the same signed body under another delivery id a duplicate (for `ttl_seconds`).

    A dated body (`dated_hour`, with its bucket's `bucket_expires_at`) goes into one of that hour's hashes instead of
    a key of its own: the first of its `keys.body_digest_levels` with fewer than DIGESTS_PER_HASH fields, chosen by
    the script (`@digest`, store/atomic.py), so only for a batch run by `ConditionalExecutor`. Every level expires
    at `bucket_expires_at`; a bucket already past its expiry is not written (every body of that hour is refused as
    stale, freshness.assess gives no hour)."""
    if dated_hour is None or bucket_expires_at is None:
        pipe.set(keys.delivery_body(digest), 1, ex=ttl_seconds)
        return
    field = bytes.fromhex(digest)  # ValueError on a digest that is not hex, before anything is queued
    if len(field) != BODY_DIGEST_BYTES:
        raise ValueError(f"a body digest is {BODY_DIGEST_BYTES} bytes, not {len(field)}: {digest!r}")
    pipe.execute_command("@digest", field, bucket_expires_at, DIGESTS_PER_HASH,  # type: ignore[no-untyped-call]
                         *keys.body_digest_levels(dated_hour, digest))
