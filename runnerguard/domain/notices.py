"""What runnerguard tells a person: one notice per thing that happened (a trigger fired, a host went down...).

Producers (the rollback service, the host reports, the watchdog) build a Notice and hand it to
`runnerguard.services.notify.emit`; the notifiers (Slack, a signed webhook, a GitHub issue) deliver it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The events a notifier can subscribe to (`[[notify]] events = [...]` in the policy).
ROLLBACK, BLOCKED, HOST, WATCHDOG, RESTORE, CLEANUP, HEALTHY = (
    "rollback", "blocked", "host", "watchdog", "restore", "cleanup", "healthy")
EVENTS = (ROLLBACK, BLOCKED, HOST, WATCHDOG, RESTORE, CLEANUP, HEALTHY)


@dataclass(frozen=True)
class Notice:
    """One thing that happened, in a person's words, with its evidence and links.

    `event` is one of EVENTS; `state` is the new state it describes ("pr_open", "blocked", "down", "up",
    "cancelled", "force_cancelled", "rerun", "healthy", ...); `resolved` marks the message that ends an outage
    (a host up again, a pool healthy again). `subject` is what dedupe and cooldown are kept per: the pool, or the
    host for host events.
    """

    event: str
    state: str
    summary: str
    at: float
    pool: str | None = None
    repo: str | None = None
    host: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    next_step: str = ""
    resolved: bool = False

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"unknown notice event {self.event!r}")

    @property
    def subject(self) -> str:
        return self.host if self.event == HOST and self.host else (self.pool or self.host or "-")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Notice:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
