"""The static fields of RQ jobs, kept in Redis once so the intake's script copies them instead of receiving them.

An RQ job hash has ~20 fields; all but four (data, description, created_at, enqueued_at) are the same for every job
of one (task, queue). Sending them with every delivery was most of the intake's arguments (bench/bench_wrk.py).
A template is saved under the digest of its fields, so two releases or two task options never share one, and this
process remembers what it saved: if Redis lost them (a flush, a restore of an old copy), the script refuses with
NOTEMPLATE before writing anything, and `restore` puts them back for one more try.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping

import redis

from runnerguard.store import keys

MISSING = "NOTEMPLATE"  # the prefix of the script's error when a template it needs is not in Redis

_saved: dict[str, dict[bytes, bytes]] = {}
_lock = threading.Lock()


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"an RQ job field of type {type(value).__name__} cannot be kept in a template")
    return repr(value).encode()


def save(client: redis.Redis, fields: Mapping[str, object]) -> str:
    """Store these static fields (idempotent: same fields, same key) and answer the key the script reads."""
    encoded = {_as_bytes(name): _as_bytes(value) for name, value in sorted(fields.items())}
    digest = hashlib.sha256(b"\0".join(k + b"=" + v for k, v in encoded.items())).hexdigest()[:16]
    key = keys.rq_job_template(digest)
    client.hset(key, mapping=encoded)  # type: ignore[arg-type]  # redis-py's Mapping is invariant
    with _lock:
        _saved[key] = encoded
    return key


def restore(client: redis.Redis) -> int:
    """Write again every template this process saved (after the script answered NOTEMPLATE); how many."""
    with _lock:
        saved = dict(_saved)
    pipe = client.pipeline(transaction=False)
    for key, fields in saved.items():
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
    pipe.execute()
    return len(saved)


def is_missing(error: BaseException) -> bool:
    return isinstance(error, redis.ResponseError) and str(error).startswith(MISSING)
