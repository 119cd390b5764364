"""Runner hosts: tokens, the agent's config, its reports and results, the work a queued job makes, host Notices."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from config.policy import HostSpec, Policy
from runnerguard import __version__
from runnerguard.domain.events import WorkflowJobEvent
from runnerguard.domain.hosts import DOWN, UP, HostStatus, check_name
from runnerguard.domain.notices import CLEANUP, HOST, Notice
from runnerguard.domain.pools import pools_for
from runnerguard.errors import Conflict, NotFound
from runnerguard.prewarm import CacheSpec, CommandSpec
from runnerguard.services import notify
from runnerguard.store import host_tokens, prewarm_stats, work
from runnerguard.store import hosts as host_store

log = logging.getLogger("runnerguard.hosts")
REPORT_EVERY = 30
WORK_MAX_AGE = 86400  # a job queued a day ago is long done: its pre-warm is not worth doing any more


@dataclass(frozen=True)
class NewHost:
    name: str
    token: str


def add(client: redis.Redis, name: str, *, now: float) -> NewHost:
    token = host_tokens.add(client, check_name(name), now=now)
    if token is None:
        raise Conflict(f"host {name!r} already has a token (revoke it first to issue a new one)")
    return NewHost(name=name, token=token)


def revoke(client: redis.Redis, name: str) -> None:
    if not host_tokens.revoke(client, check_name(name)):
        raise NotFound(f"no host {name!r} holds a token")


def cache_table(spec: CacheSpec) -> dict[str, Any]:
    """A cache as the policy declares it (what `CacheSpec.from_mapping` reads back)."""
    table: dict[str, Any] = {"name": spec.name, "url": spec.url, "sha256": spec.sha256, "dest": str(spec.dest),
                             "unpack": spec.unpack, "pools": list(spec.pools), "repos": list(spec.repos),
                             "ttl_seconds": spec.ttl_seconds}
    if spec.size is not None:
        table["size"] = spec.size
    if spec.quota_bytes is not None:
        table["quota_bytes"] = spec.quota_bytes
    return table


def command_table(spec: CommandSpec) -> dict[str, Any]:
    return {"name": spec.name, "argv": list(spec.argv), "cwd": str(spec.cwd), "timeout_seconds": spec.timeout_seconds,
            "env_allow": list(spec.env_allow), "pools": list(spec.pools), "repos": list(spec.repos)}


def agent_config(policy: Policy, name: str) -> dict[str, Any]:
    """`GET /agent/v1/config`: the host's own table and the caches and commands of the pools it serves."""
    spec = policy.host(name) or HostSpec(name=name, runner_dir="")
    pools = set(policy.host_pools(name))
    return {
        "host": {**spec.public(), "runner_dir": spec.runner_dir or None},
        "caches": [cache_table(c) for c in policy.caches if pools & set(c.pools)],
        "commands": [command_table(c) for c in policy.commands if pools & set(c.pools)],
        "report_every": REPORT_EVERY,
        "server_version": __version__,
    }


def ingest_report(client: redis.Redis, policy: Policy, name: str, report: dict[str, Any], *,
                  now: float) -> HostStatus:
    """Keep the report; count its job-side cache answers for the caches this host serves."""
    status = host_store.save_report(client, policy, name, report, now=now)
    served = {c.name for c in policy.caches if set(policy.host_pools(name)) & set(c.pools)}
    for cache, counts in report.get("cache_answers", {}).items():
        if cache in served:  # an answer for a cache the policy does not give this host is the host's word only
            prewarm_stats.record_job_answers(client, cache, name, hit=counts["hit"], waited=counts["waited"], now=now)
    return status


RESULT_COUNTERS: dict[str, tuple[prewarm_stats.Counter, prewarm_stats.State | None]] = {
    "hit": ("hits", "installed"), "installed": ("misses", "installed"), "ran": ("hits", None),
    "skipped": ("skipped", None), "error": ("errors", "failed"),
}


def record_result(client: redis.Redis, name: str, item: dict[str, Any], result: dict[str, Any], *,
                  now: float) -> None:
    """A done item's result feeds the pre-warm stats behind `/api/caches` (caches only; commands are logged)."""
    log.info("work done", extra={"status": result["state"], "job_id": item.get("job_id"), "error": result["error"]})
    if item.get("kind") != "cache":
        return
    counter, state = RESULT_COUNTERS[result["state"]]
    prewarm_stats.record(client, str(item["name"]), name, counter=counter, state=state, nbytes=result["bytes"],
                         seconds=result["seconds"], error=result["error"], now=now)


def make_work(client: redis.Redis, policy: Policy, event: WorkflowJobEvent, *, now: float) -> int:
    """A queued job's work items: for each host serving one of its pools, its caches and commands, once each."""
    pools = pools_for(event.labels, policy.pools)
    repo = event.repo if event.repo_is_safe else None
    created = 0
    for pool in policy.pools:
        if pool.name not in pools:
            continue
        caches, commands = policy.prewarm_specs_for([pool.name], repo)
        for host in pool.hosts:
            for kind, name in [("cache", c.name) for c in caches] + [("command", c.name) for c in commands]:
                created += work.create(client, host, job_id=event.job_id, kind=kind, name=name, now=now)
    return created


def check_hosts(client: redis.Redis, policy: Policy, *, now: float) -> dict[str, list[str]]:
    """Periodic: a Notice when a host goes down or comes back, and one per cleanup its reports carried; work items
    older than a day are dropped."""
    changed: dict[str, list[str]] = {"down": [], "up": [], "cleanups": []}
    for status in host_store.list_statuses(client, policy, now=now):
        work.drop_older_than(client, status.name, now - WORK_MAX_AGE)
        pools = policy.host_pools(status.name)
        pool = pools[0] if pools else None
        if status.last_seen is not None and status.state in (UP, DOWN):
            previous = host_store.swap_notified(client, status.name, status.state)
            # the first state on record is not a transition, unless it is down (nobody has been told yet)
            if previous != status.state and (previous is not None or status.state == DOWN):
                notify.emit(client, _host_notice(status, pool, pools, now=now))
                changed[status.state].append(status.name)
        for cleanup in host_store.take_cleanups(client, status.name):
            notify.emit(client, _cleanup_notice(status.name, pool, cleanup, now=now))
            changed["cleanups"].append(status.name)
    return changed


def _host_notice(status: HostStatus, pool: str | None, pools: list[str], *, now: float) -> Notice:
    if status.state == DOWN:
        summary = f"Runner host {status.name} is down: {status.why_unavailable(now).split(': ', 1)[1]}"
        next_step = "Check the machine, its network and the runnerguard agent's service on it."
    else:
        summary = f"Runner host {status.name} is up again"
        next_step = ""
    return Notice(event=HOST, state=status.state, summary=summary, at=now, pool=pool, host=status.name,
                  evidence={"last_seen": status.last_seen, "pools": pools, "runner": status.runner},
                  next_step=next_step, resolved=status.state == UP)


def _cleanup_notice(host: str, pool: str | None, cleanup: dict[str, Any], *, now: float) -> Notice:
    verb = "would free" if cleanup.get("dry_run") else "freed"
    mib = int(cleanup.get("freed_bytes", 0)) / 2**20
    summary = (f"Runner host {host} {verb} {mib:,.0f} MiB "
               f"({cleanup.get('removed_count', len(cleanup.get('removed', [])))} paths)")
    return Notice(event=CLEANUP, state="dry_run" if cleanup.get("dry_run") else "cleaned", summary=summary, at=now,
                  pool=pool, host=host, evidence=dict(cleanup))
