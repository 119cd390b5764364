"""What makes a webhook delivery new: its id in one canonical form, its body's digest, and its age."""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runnerguard.domain.timeline import PayloadError, parse_time

# 16 bytes of SHA-256 (128 bits): a chance collision within a retention's worth of deliveries is negligible,
# and the key stays short (the intake keeps one per accepted body).
BODY_DIGEST_BYTES = 16
JOB_TIME_FIELDS = ("created_at", "started_at", "completed_at")
DIGEST_SLACK = 3600  # seconds a dated body's digest outlives its age limit: clock skew between web hosts


def canonical_delivery_id(raw: str) -> str:
    """GitHub's delivery GUIDs are UUIDs: any case and any placement of dashes of one UUID name one delivery.

    An id that is not a UUID (the simulator, hand-made test deliveries) is kept, lower-cased: GitHub never sends
    one, and the body digest still catches a replayed body under it.
    """
    compact = raw.replace("-", "")
    if len(compact) == 32:
        try:
            return str(uuid.UUID(hex=compact))
        except ValueError:
            pass
    return raw.lower()


def body_digest(body: bytes) -> str:
    """The short hex digest the intake dedupes bodies on (the HMAC covers the body, not the delivery id)."""
    return hashlib.sha256(body).digest()[:BODY_DIGEST_BYTES].hex()


def newest_job_time(payload: Mapping[str, Any]) -> float | None:
    """The newest of a `workflow_job` payload's timestamps, None when it carries none we can read."""
    job = payload.get("workflow_job")
    if not isinstance(job, Mapping):
        return None
    newest: float | None = None
    for name in JOB_TIME_FIELDS:
        try:
            when = parse_time(job.get(name))
        except PayloadError:
            continue  # the timeline task reports a bad timestamp; here it only cannot make the body stale
        if when is not None and (newest is None or when > newest):
            newest = when
    return newest


@dataclass(frozen=True)
class Freshness:
    """What the intake needs of a body's age: is it stale, and where and how long its digest is kept."""

    stale: bool
    keep_seconds: int  # how long the digest must be kept to refuse the body under another delivery id
    # A dated body's digest goes into the hash of the hour its newest timestamp falls in (the same bytes always
    # date the same), which expires once every body of that hour is stale; None: a key of its own, `keep_seconds`.
    dated_hour: int | None = None
    bucket_expires_at: int | None = None


def assess(event: str, payload: Mapping[str, Any], *, now: float, max_age_seconds: int,
           keep_seconds: int) -> Freshness:
    """A body the age check can date is refused as stale once it is older than the limit, whatever its id: its digest
    is needed only until then (plus DIGEST_SLACK for web hosts whose clocks disagree), not for `keep_seconds` (the
    delivery retention, 14 days by default). Any other body keeps its digest for `keep_seconds`.
    """
    if event != "workflow_job" or max_age_seconds <= 0:
        return Freshness(False, keep_seconds)
    newest = newest_job_time(payload)
    if newest is None:
        return Freshness(False, keep_seconds)
    left = newest + max_age_seconds - now
    stale, keep = left < 0, max(1, min(keep_seconds, math.ceil(max(left, 0.0)) + DIGEST_SLACK))
    hour = math.floor(newest / 3600)
    expires_at = (hour + 1) * 3600 + max_age_seconds + DIGEST_SLACK
    if newest > now + DIGEST_SLACK or expires_at <= now:
        # From the future (a clock far off: no bucket that lives for years), or so old that its hour's bucket
        # would already be gone (every body of that hour is stale): a key of its own, as an undated body.
        return Freshness(stale, keep)
    return Freshness(stale, keep, hour, expires_at)


def check(event: str, payload: Mapping[str, Any], *, now: float, max_age_seconds: int,
          keep_seconds: int) -> tuple[bool, int]:
    """(is the body stale, how long its digest must be kept): `assess` without the bucket."""
    found = assess(event, payload, now=now, max_age_seconds=max_age_seconds, keep_seconds=keep_seconds)
    return found.stale, found.keep_seconds
