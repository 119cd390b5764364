"""What the notifiers remember: cooldowns and open outages per (notifier, subject), each notifier's last result, and
the outage issue a github-issue notifier keeps open per pool."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from redis.lock import Lock

from runnerguard.domain.notices import EVENTS
from runnerguard.store import keys, metrics

NOTIFY_TOTAL = "runnerguard_notify_total"
OPEN_TTL = 30 * 86400  # an outage nobody resolved is forgotten after a month
RESOLVED_TTL = 14 * 86400  # as long as a failed delivery task may be retried
ISSUE_TTL = 90 * 86400
SENT, SUPPRESSED, ERROR = "sent", "suppressed", "error"
RESULTS = (SENT, SUPPRESSED, ERROR)

# KEYS[1] the cooldown key of (event, subject), KEYS[2] the open-outage set, KEYS[3] the resolved marker,
# KEYS[4..] every cooldown key of the subject (cleared when an outage is resolved).
# ARGV: notice id, cooldown seconds, "1" if the notice resolves, the event, "1" if the event is an outage.
# Returns 1 when this notice is to be delivered (also on a retry of the same notice), 0 when it is not.
_CLAIM = """
local id = ARGV[1]
if ARGV[3] == '1' then
  if redis.call('GET', KEYS[3]) == id then return 1 end
  if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
  redis.call('DEL', KEYS[2])
  for i = 4, #KEYS do redis.call('DEL', KEYS[i]) end
  redis.call('SET', KEYS[3], id, 'EX', tonumber(ARGV[6]))
  return 1
end
local owner = redis.call('GET', KEYS[1])
if owner == id then return 1 end
if owner then return 0 end
redis.call('SET', KEYS[1], id, 'EX', tonumber(ARGV[2]))
if ARGV[5] == '1' then
  redis.call('SADD', KEYS[2], ARGV[4])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[7]))
  redis.call('DEL', KEYS[3])
end
return 1
"""


def claim(client: redis.Redis, notifier: str, notice_id: str, *, event: str, subject: str, resolved: bool,
          outage: bool, cooldown: int) -> bool:
    """True when `notifier` is to deliver this notice: the first of its (event, subject) within the cooldown, or
    the notice that resolves an outage it announced. Atomic, and true again for a retry of the same notice."""
    script = client.register_script(_CLAIM)
    names = [keys.notify_cooldown(notifier, event, subject), keys.notify_open(notifier, subject),
             keys.notify_resolved(notifier, subject)]
    names += [keys.notify_cooldown(notifier, e, subject) for e in EVENTS]
    args: list[str | int] = [notice_id, max(int(cooldown), 1), "1" if resolved else "0", event, "1" if outage else "0",
            RESOLVED_TTL, OPEN_TTL]
    return bool(script(keys=names, args=args))


def record(client: redis.Redis, notifier: str, result: str, *, at: float, event: str,
           error: str | None = None) -> None:
    """Count the outcome (`runnerguard_notify_total{notifier,result}`) and keep the last one for the dashboard."""
    fields: dict[str, str] = {"last_result": result, "last_at": repr(at), "last_event": event}
    if result == SENT:
        fields["last_sent_at"] = repr(at)
    if result == ERROR:
        fields["last_error"] = (error or "error")[:300]
        fields["last_error_at"] = repr(at)
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.notify_status(notifier), mapping=fields)  # type: ignore[arg-type]  # invariant Mapping
    metrics.incr_on(pipe, NOTIFY_TOTAL, {"notifier": notifier, "result": result})
    pipe.execute()


def mark_sent(client: redis.Redis, notifier: str, notice_id: str) -> None:
    client.set(keys.notify_sent(notifier, notice_id), "1", ex=RESOLVED_TTL)


def was_sent(client: redis.Redis, notifier: str, notice_id: str) -> bool:
    return bool(client.exists(keys.notify_sent(notifier, notice_id)))


def status(client: redis.Redis, notifier: str) -> dict[str, Any]:
    raw: dict[bytes, bytes] = client.hgetall(keys.notify_status(notifier))  # type: ignore[assignment]
    out: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
    for name in ("last_at", "last_sent_at", "last_error_at"):
        if name in out:
            out[name] = float(out[name])
    return out


@dataclass(frozen=True)
class OutageIssue:
    """The open issue of one pool's outage, as a github-issue notifier keeps it."""

    repo: str
    number: int
    url: str
    opened_at: float
    last_comment_at: float
    evidence: dict[str, Any] = field(default_factory=dict)  # the evidence the outage opened with
    actions: list[dict[str, Any]] = field(default_factory=list)  # what runnerguard did meanwhile (outage_text)


def load_issue(client: redis.Redis, notifier: str, pool: str) -> OutageIssue | None:
    raw = client.get(keys.notify_issue(notifier, pool))
    if not raw:
        return None
    return OutageIssue(**json.loads(raw))


def save_issue(client: redis.Redis, notifier: str, pool: str, issue: OutageIssue) -> None:
    client.set(keys.notify_issue(notifier, pool), json.dumps(asdict(issue)), ex=ISSUE_TTL)


def forget_issue(client: redis.Redis, notifier: str, pool: str) -> None:
    client.delete(keys.notify_issue(notifier, pool))


def issue_lock(client: redis.Redis, notifier: str, pool: str, *, timeout: float, blocking_timeout: float) -> Lock:
    """One worker at a time writes a pool's outage issue: two workers must never open two issues."""
    lock: Lock = client.lock(keys.notify_issue_lock(notifier, pool), timeout=timeout,
                             blocking_timeout=blocking_timeout)
    return lock
