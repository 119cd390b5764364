"""A task's "done" as the release before the one-field done wrote it (copied from commit 6a87dd6), for migration
tests: `task:<name>=done` AND the compact mark `@<ms, base 36>:<task>` -> "", in one HSET."""

from __future__ import annotations

import time

import redis

from runnerguard.store import keys


def _base36(number: int) -> str:
    digits = ""
    while True:
        number, digit = divmod(number, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[digit] + digits
        if not number:
            return digits


def mark_done(client: redis.Redis, guid: str, task: str, *, now: float | None = None) -> None:
    now = time.time() if now is None else now
    mark = f"@{_base36(round(now * 1000))}:{task}"
    client.hset(keys.delivery(guid), mapping={f"task:{task}": "done", mark: ""})
