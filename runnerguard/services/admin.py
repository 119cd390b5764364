"""Admin actions shared by the admin API and the CLI: each checks its input and queues the work, nothing more."""

from __future__ import annotations

import redis

from config import Policy
from runnerguard.domain.names import is_repo
from runnerguard.errors import Conflict, InvalidInput, NotFound
from runnerguard.queue import tasks
from runnerguard.store import rollback_state

NOTE_LIMIT = 500


def check_pool(policy: Policy, name: object) -> str:
    if not isinstance(name, str) or policy.find_pool(name) is None:
        names = ", ".join(p.name for p in policy.all_pools)
        raise NotFound(f"no pool {str(name)[:64]!r} (pools: {names})")
    return name


def check_repo(value: object, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not is_repo(value):
        raise InvalidInput("repo must look like owner/name")
    return str(value)


def request_rollback(client: redis.Redis, policy: Policy, pool: object, repo: object, note: object = "") -> str:
    """Queue a manual rollback of a pool (in one repo, or every repo that ran its jobs lately); the task id."""
    pool_name = check_pool(policy, pool)
    repo_name = check_repo(repo, required=False)
    if not isinstance(note, str) or len(note) > NOTE_LIMIT:
        raise InvalidInput(f"note must be a string of at most {NOTE_LIMIT} characters")
    return str(tasks.enqueue(tasks.MANUAL_ROLLBACK, pool_name, repo_name, note, connection=client).id)


def request_restore(client: redis.Redis, policy: Policy, pool: object, repo: object) -> str:
    """Queue the restore PR of a pool in a repo, once rolled back (or while its rollback PR is open); the task id."""
    pool_name = check_pool(policy, pool)
    repo_name = str(check_repo(repo, required=True))
    current = rollback_state.load(client, pool_name, repo_name)
    if current.state not in (rollback_state.ROLLED_BACK, rollback_state.PR_OPEN):
        raise Conflict(f"{pool_name} in {repo_name} is {current.state}: nothing to restore")
    return str(tasks.enqueue(tasks.RESTORE_ROLLBACK, pool_name, repo_name, connection=client).id)
