"""A failed job's cause facts in one small hash: its cause record, its metered mark and its host fact.

The previous release kept three strings a failed job (~720 + 88 + 104 bytes): the cause as JSON (keys.job_cause),
a "counted" marker (keys.cause_metered) and the host fact (keys.job_host_fact). Now one hash (keys.job_causes):

  "n"            how many chunks the cause record's frame has
  "0".."n-1"     the frame, 63 bytes a chunk: Redis keeps a hash as a listpack only while every value is at most
                 64 bytes, and one longer value turns the whole hash into a hashtable (~3x the bytes)
  "m"            "1": runnerguard_jobs_total counted the job (store/causes.py meter_once, jobstore's upsert)
  "h"            the host fact's JSON, when it fits in 63 bytes (a longer one is kept in keys.job_host_fact)

The record is a zstd frame (the shipped body dictionary: a cause's steps, runner names and conclusions are the
words of a workflow_job payload) of compact JSON: short field names, no null fields, and the steps as a list of
names plus one letter per step for its (status, conclusion). ~590 bytes of JSON -> ~120 bytes.

The previous release's strings stay readable (and its marker keeps guarding) until they expire, 31 days.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import redis
from redis.client import Pipeline

from runnerguard.errors import Permanent
from runnerguard.store import keys
from runnerguard.store.body_codec import LISTPACK_CHUNK, SHIPPED_ID, BodyCodec, BodyError, frame_dict_id, split_frame

TTL = 31 * 86400  # a little over the longest job retention: a cause outlives no record by much
CHUNK = LISTPACK_CHUNK  # the record's chunks and the longest host fact kept in the hash (body_codec says why)
COUNT, METERED, HOST = b"n", b"m", b"h"

# Field names in the stored JSON. A field not named here is refused when written: it would be lost when read.
_TOP = {"cause": "c", "evidence": "e", "kind": "k", "step": "s", "person": "p", "fork": "f", "twin": "t",
        "inputs": "i", "digest": "d"}
_INPUTS = {"conclusion": "c", "runner_name": "r", "steps": "s", "failed_step": "f"}
_DEFAULTS: dict[str, Any] = {"person": False}  # left out when stored, like every None
# (status, conclusion) of a step -> one letter; a step with any other pair keeps its steps in full.
_STATES = {("completed", "success"): "s", ("completed", "failure"): "f", ("completed", "skipped"): "k",
           ("completed", "cancelled"): "c", ("completed", "neutral"): "n", ("completed", "timed_out"): "t",
           ("completed", None): "e", ("in_progress", None): "i", ("queued", None): "q", ("pending", None): "p",
           ("waiting", None): "w"}
_LETTERS = {letter: pair for pair, letter in _STATES.items()}


class CauseRecordError(Permanent):
    """A stored cause record cannot be read back: corrupted bytes, never a silently wrong cause."""


# --- the record's encoding -----------------------------------------------------------------------------------------

def encode(codec: BodyCodec, data: Mapping[str, Any]) -> bytes:
    """The cause record as stored: a zstd frame of its compact JSON."""
    unknown = sorted(set(data) - set(_TOP))
    if unknown:
        raise ValueError(f"a cause record has no field {', '.join(unknown)} (known: {', '.join(_TOP)})")
    out: dict[str, Any] = {}
    for name, short in _TOP.items():
        value = data.get(name)
        if value is None or (name in _DEFAULTS and value == _DEFAULTS[name]):
            continue
        out[short] = _compact_inputs(value) if name == "inputs" else value
    return codec.compress(orjson.dumps(out), dict_id=SHIPPED_ID)[1]


def _compact_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(inputs) - set(_INPUTS))
    if unknown:
        raise ValueError(f"a cause record's inputs have no field {', '.join(unknown)}")
    out = {_INPUTS[name]: value for name, value in inputs.items() if value is not None}
    steps = inputs.get("steps")
    if isinstance(steps, Sequence) and all(
            isinstance(s, Sequence) and len(s) == 3 and (s[1], s[2]) in _STATES for s in steps):
        out["s"] = [s[0] for s in steps]
        out["q"] = "".join(_STATES[(s[1], s[2])] for s in steps)
    return out


def decode(codec: BodyCodec, frame: bytes, *, where: str) -> dict[str, Any]:
    """The cause record a frame holds, every field present (None when not stored), or CauseRecordError."""
    try:
        compact = orjson.loads(codec.decompress(frame_dict_id(frame), frame))
        if not isinstance(compact, dict):
            raise CauseRecordError(f"cause record {where} is corrupted (not an object)")
        data = {name: compact.get(short, _DEFAULTS.get(name)) for name, short in _TOP.items()}
        if isinstance(data["inputs"], dict):
            data["inputs"] = _expand_inputs(data["inputs"])
        return data
    except (BodyError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CauseRecordError(f"cause record {where} is corrupted ({exc})") from None


def _expand_inputs(compact: dict[str, Any]) -> dict[str, Any]:
    inputs = {name: compact.get(short) for name, short in _INPUTS.items()}
    if "q" in compact:
        names, letters = compact["s"], compact["q"]
        if len(names) != len(letters):
            raise ValueError(f"{len(names)} step names for {len(letters)} step states")
        inputs["steps"] = [[name, *_LETTERS[letter]] for name, letter in zip(names, letters, strict=True)]
    return inputs


def _json_object(raw: bytes, *, what: str) -> dict[str, Any]:
    """A JSON object stored as it is (the previous release's cause, a host fact), or CauseRecordError naming it."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CauseRecordError(f"{what} is corrupted ({exc})") from None
    if not isinstance(data, dict):
        raise CauseRecordError(f"{what} is corrupted (not an object)")
    return data


def _old(raw: bytes, *, where: str) -> dict[str, Any]:
    """A cause as the previous release stored it: a JSON string."""
    return _json_object(raw, what=f"cause record {where}")


# --- reading -------------------------------------------------------------------------------------------------------

def queue_reads(pipe: Pipeline, pairs: Sequence[tuple[int, int]]) -> int:
    """Queue what `parse_reads` needs for these (repo_id, job_id): the old strings (one MGET) and each job's hash.
    Returns how many replies that adds."""
    if not pairs:
        return 0
    pipe.mget([keys.job_cause(*p) for p in pairs])
    for pair in pairs:
        pipe.hgetall(keys.job_causes(*pair))
    return 1 + len(pairs)


def parse_reads(codec: BodyCodec, pairs: Sequence[tuple[int, int]], replies: Sequence[Any]
                ) -> list[dict[str, Any] | None]:
    """The cause records of `pairs` (None: none stored) from `queue_reads`'s replies: the hash's if it holds one,
    else the previous release's string."""
    if not pairs:
        return []
    olds, hashes = replies[0], replies[1:]
    return [parse(codec, pair, fields, old) for pair, fields, old in zip(pairs, hashes, olds, strict=True)]


def parse(codec: BodyCodec, pair: tuple[int, int], fields: Mapping[bytes, bytes], old: bytes | None
          ) -> dict[str, Any] | None:
    count = fields.get(COUNT)
    if count is not None:
        where = keys.job_causes(*pair)
        chunks = []
        try:
            for n in range(int(count)):
                chunks.append(fields[str(n).encode()])
        except ValueError:
            raise CauseRecordError(f"cause record {where} is corrupted (chunk count {count!r})") from None
        except KeyError:
            raise CauseRecordError(f"cause record {where} is corrupted (chunk {len(chunks)} of {int(count)} is "
                                   "missing)") from None
        return decode(codec, b"".join(chunks), where=where)
    if old:
        return _old(old, where=keys.job_cause(*pair))
    return None


# --- writing -------------------------------------------------------------------------------------------------------

def write_on(pipe: Pipeline, repo_id: int, job_id: int, frame: bytes, *, had_chunks: int) -> None:
    """Queue the record's chunks (dropping those of a longer earlier record) and remove the old string."""
    key = keys.job_causes(repo_id, job_id)
    chunks = {str(n): chunk for n, chunk in enumerate(split_frame(frame))}
    fields: dict[str, bytes | int] = {COUNT.decode(): len(chunks), **chunks}
    pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # redis-py's mapping type is invariant
    stale = [str(n) for n in range(len(chunks), had_chunks)]
    if stale:
        pipe.hdel(key, *stale)
    pipe.expire(key, TTL)
    pipe.delete(keys.job_cause(repo_id, job_id))


def chunk_count(client: redis.Redis, repo_id: int, job_id: int) -> int:
    """How many chunks the stored record has: a later shorter record removes the rest. Read outside the write:
    should another writer change it meanwhile, chunks past "n" are only unused bytes, removed by the next write."""
    raw = client.hget(keys.job_causes(repo_id, job_id), COUNT)
    try:
        return int(raw) if raw is not None else 0
    except ValueError:
        return 0  # a corrupted count: the write replaces it


def mark_metered_on(pipe: Pipeline, repo_id: int, job_id: int) -> None:
    key = keys.job_causes(repo_id, job_id)
    pipe.hset(key, METERED.decode(), "1")
    pipe.expire(key, TTL)


def metered_guards(repo_id: int, job_id: int) -> tuple[list[str], tuple[tuple[str, ...], bytes]]:
    """(guard keys, guard field) for `ConditionalExecutor.execute_if_new`: the job counts as metered if the
    previous release's marker key exists or its hash has the field."""
    return [keys.cause_metered(repo_id, job_id)], ((keys.job_causes(repo_id, job_id),), METERED)


def host_fact(client: redis.Redis, repo_id: int, job_id: int) -> dict[str, Any] | None:
    pipe = client.pipeline(transaction=False)
    pipe.hget(keys.job_causes(repo_id, job_id), HOST)
    pipe.get(keys.job_host_fact(repo_id, job_id))
    new, old = pipe.execute()
    raw = new if new is not None else old
    if not raw:
        return None
    return _json_object(raw, what=f"host fact of job {repo_id}:{job_id}")


def save_host_fact(client: redis.Redis, repo_id: int, job_id: int, fact: Mapping[str, Any]) -> None:
    """None fields are left out (HostFact's defaults); a fact too long for a listpack value keeps its own key."""
    raw = orjson.dumps({k: v for k, v in fact.items() if v is not None})
    if len(raw) > CHUNK:
        client.set(keys.job_host_fact(repo_id, job_id), raw, ex=TTL)
        return
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.job_causes(repo_id, job_id), HOST.decode(), raw)
    pipe.expire(keys.job_causes(repo_id, job_id), TTL)
    pipe.execute()
