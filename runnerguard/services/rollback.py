"""Rollback, the one service: evaluate the triggers, queue the GitHub work once, open / follow / restore the PRs.

When to act lives here; how a PR is written lives in rollback_prs (Rollbacks). Queued tasks carry only the pool and
the repository: the decision they act on is recorded beside the rollback state, not sent through the queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import redis

from config import Policy
from runnerguard.domain import rules
from runnerguard.domain.events import PullRequestEvent
from runnerguard.domain.pools import Pool, pools_for
from runnerguard.domain.restore import AUTO, auto_restore_check
from runnerguard.domain.rules import Decision
from runnerguard.errors import NotFound
from runnerguard.github import GitHubApp
from runnerguard.queue import tasks
from runnerguard.services.rollback_prs import Rollbacks
from runnerguard.store import causes, jobstore
from runnerguard.store import hosts as host_store
from runnerguard.store import rollback_state as states

log = logging.getLogger("runnerguard.rollback")
ROLLBACK_PREFIXES = ("runnerguard/rollback/", "runnerguard/restore/")
QUEUED_STATES = ("queued", "started", "scheduled", "deferred")


def restore_job_id(pool: str, repo: str) -> str:
    return "restore_" + "".join(c if c.isalnum() or c in "_-" else "-" for c in f"{pool}_{repo}")


def rollback_job_id(pool: str, repo: str) -> str:
    return "rollback_" + "".join(c if c.isalnum() or c in "_-" else "-" for c in f"{pool}_{repo}")


@dataclass
class RollbackService:
    redis: redis.Redis
    policy: Policy
    github: GitHubApp | None
    clock: Callable[[], float] = time.time
    _prs: Rollbacks | None = field(default=None, init=False, repr=False)

    @property
    def prs(self) -> Rollbacks:
        if self._prs is None:
            self._prs = Rollbacks(redis=self.redis, github=self.github,
                                  cooldown_seconds=self.policy.rollback.cooldown_seconds,
                                  dry_run=self.policy.rollback.dry_run, clock=self.clock)
        return self._prs

    def pool(self, name: str) -> Pool:
        pool = self.policy.find_pool(name)
        if pool is None:
            raise NotFound(f"no pool named {name!r} in the policy")
        return pool

    # --- triggers -------------------------------------------------------------------------------------------------

    def failure_rate_decision(self, pool: Pool) -> Decision:
        rule = self.policy.failure_rate_for(pool.name)
        finished, failed = jobstore.window_counts(self.redis, pool.name, self.clock() - rule.window_seconds)
        return rules.failure_rate(pool.name, finished=finished, failed=failed, window_seconds=rule.window_seconds,
                                  threshold=rule.threshold, min_jobs=rule.min_jobs)

    def stuck_queue_decision(self, pool: Pool) -> Decision:
        rule = self.policy.rollback.stuck_queue
        waiting, started = jobstore.stuck_counts(self.redis, pool.name, self.clock() - rule.after_seconds)
        return rules.stuck_queue(pool.name, waiting_longer=waiting, started_recently=started,
                                 after_seconds=rule.after_seconds, min_jobs=rule.min_jobs)

    def host_down_decision(self, pool: Pool) -> Decision:
        """Every host of the pool down (or its runner offline) while a job of the pool waits longer than `after`."""
        rule = self.policy.rollback.host_down
        now = self.clock()
        statuses = [host_store.get_status(self.redis, self.policy, name, now=now) for name in pool.hosts]
        unavailable = [s.why_unavailable(now) for s in statuses if s is not None and s.unavailable]
        waiting = jobstore.stuck_counts(self.redis, pool.name, now - rule.after_seconds)[0] if pool.hosts else 0
        return rules.host_down(pool.name, hosts=len(pool.hosts), unavailable=unavailable, waiting_longer=waiting,
                               after_seconds=rule.after_seconds)

    def repos_in_window(self, pool: Pool, decision: Decision) -> list[str]:
        """Repositories that ran jobs of the pool in the window (by completed_at), or that have jobs stuck waiting."""
        since = self.clock() - (decision.window_seconds or 86400)
        repos = jobstore.repos_since(self.redis, pool.name, since)
        if decision.trigger in (rules.STUCK_QUEUE, rules.HOST_DOWN):
            repos |= jobstore.waiting_repos(self.redis, pool.name, since)
        return sorted(repos)

    def request(self, pool: Pool, repo: str, decision: Decision) -> bool:
        """Queue the GitHub work for one pool and repo, once: a rollback already queued is not queued again."""
        job_id = rollback_job_id(pool.name, repo)
        if tasks.is_pending(job_id, connection=self.redis):
            return False
        states.save_pending(self.redis, pool.name, repo, decision.as_dict())
        tasks.enqueue(tasks.OPEN_ROLLBACK, pool.name, repo, connection=self.redis, job_id=job_id)
        return True

    def evaluate(self, pool: Pool, decision: Decision) -> list[str]:
        if not decision.fire:
            return []
        queued = [repo for repo in self.repos_in_window(pool, decision) if self.request(pool, repo, decision)]
        if queued:
            log.info("rollback triggered", extra={"pool": pool.name, "status": decision.reason})
        return queued

    def after_job(self, labels: tuple[str, ...]) -> None:
        """One script call per pool of the job (store/time_buckets.py tally: ~300 O(1) commands for a day)."""
        names = set(pools_for(labels, self.policy.pools))
        for pool in self.policy.all_pools:
            if pool.name in names:
                self.evaluate(pool, self.failure_rate_decision(pool))

    def after_pools(self, names: set[str]) -> None:
        """After a cause landed: the failure rate of the pools it moved, evaluated again."""
        for pool in self.policy.all_pools:
            if pool.name in names:
                self.evaluate(pool, self.failure_rate_decision(pool))

    def sweep(self) -> dict[str, Any]:
        """Stuck queues, failure rates, and the state of open PRs."""
        triggered: dict[str, list[str]] = {}
        for pool in self.policy.all_pools:
            for decision in (self.host_down_decision(pool), self.stuck_queue_decision(pool),
                             self.failure_rate_decision(pool)):
                queued = self.evaluate(pool, decision)
                if queued:
                    triggered.setdefault(pool.name, []).extend(queued)
        changed = self.prs.check_open_pulls() if self.github is not None else []
        changed += self.unblock_recovered()
        restoring = self.auto_restores()
        return {"triggered": triggered, "changed": [f"{s.pool}/{s.repo}: {s.state}" for s in changed],
                "restoring": restoring}

    def auto_restores(self) -> list[str]:
        """`restore = "auto"` pools rolled back whose hosts have been well for restore_after: queue the restore PR
        (once; its body shows the host reports). A person's `rollback restore` works as before for any pool."""
        queued: list[str] = []
        now = self.clock()
        for current in states.list_states(self.redis):
            pool = self.policy.find_pool(current.pool)
            if pool is None or pool.restore != AUTO or current.state != states.ROLLED_BACK:
                continue
            job_id = restore_job_id(pool.name, current.repo)
            if tasks.is_pending(job_id, connection=self.redis):
                continue
            statuses = [host_store.get_status(self.redis, self.policy, name, now=now) for name in pool.hosts]
            failures = causes.counts_by_cause(self.redis, pool.name, now - pool.restore_after_seconds).get("runner", 0)
            check = auto_restore_check([s for s in statuses if s is not None], now=now,
                                       restore_after=pool.restore_after_seconds, runner_failures=failures)
            if not check.ready or any(s is None for s in statuses):
                continue
            states.save(self.redis, replace(current, restore_evidence=list(check.evidence)), event="auto_restore",
                        now=now, extra={"reason": check.reason})
            tasks.enqueue(tasks.RESTORE_ROLLBACK, pool.name, current.repo, connection=self.redis, job_id=job_id)
            log.info("automatic restore queued", extra={"pool": pool.name, "repo": current.repo,
                                                         "status": check.reason})
            queued.append(f"{pool.name}/{current.repo}")
        return queued

    def unblock_recovered(self) -> list[states.RollbackState]:
        """A blocked rollback whose trigger no longer fires is healthy again (nothing is left to act on)."""
        cleared = []
        for current in states.list_states(self.redis):
            pool = self.policy.find_pool(current.pool)
            if current.state != states.BLOCKED or pool is None or current.trigger == rules.MANUAL:
                continue
            decision = (self.stuck_queue_decision(pool) if current.trigger == rules.STUCK_QUEUE
                        else self.failure_rate_decision(pool))
            if not decision.fire and not tasks.is_pending(rollback_job_id(pool.name, current.repo),
                                                          connection=self.redis):
                cleared.append(states.save(self.redis, replace(current, state=states.HEALTHY, error=None,
                                                               reason=decision.reason), event="unblocked",
                                           now=self.clock()))
        return cleared

    def manual(self, pool_name: str, repo: str | None, note: str = "") -> list[str]:
        """An admin asks for a rollback of a pool (in one repo, or every repo that ran its jobs lately)."""
        pool = self.pool(pool_name)
        decision = rules.manual(pool.name, note=note)
        windowed = Decision(**{**decision.__dict__, "window_seconds": 86400})
        repos = [repo] if repo else self.repos_in_window(pool, windowed)
        return [r for r in repos if self.request(pool, r, decision)]

    # --- the GitHub side ------------------------------------------------------------------------------------------

    def open(self, pool_name: str, repo: str, recorded: Mapping[str, Any] | None = None) -> None:
        """Open the PR (or add evidence to the open one) for the decision recorded when the trigger fired."""
        pool = self.pool(pool_name)
        data = recorded if recorded is not None else states.load_pending(self.redis, pool.name, repo)
        decision = (Decision(**{k: v for k, v in data.items() if k != "rate"}) if data
                    else self.failure_rate_decision(pool))
        if decision.trigger == rules.FAILURE_RATE:
            # The PR states the cause as it stands when it opens, which may be a few deliveries after it first fired;
            # causes that landed since (a failure proven to be the code's) may have taken the pool below the threshold.
            decision = self.failure_rate_decision(pool)
            if not decision.fire:
                log.info("rollback no longer needed", extra={"pool": pool.name, "repo": repo,
                                                             "status": decision.reason})
                return
        self.prs.open(pool, repo, decision)

    def restore(self, pool_name: str, repo: str) -> None:
        self.prs.restore(self.pool(pool_name), repo)

    def pull_closed(self, event: PullRequestEvent) -> None:
        if not event.head_ref.startswith(ROLLBACK_PREFIXES):
            return  # not one of ours
        pool_name = event.head_ref.split("/", 2)[2]
        if not self.is_our_pull(event, states.load(self.redis, pool_name, event.repo)):
            log.warning("pull_request event ignored: not runnerguard's PR",
                        extra={"pool": pool_name, "repo": event.repo, "status": event.number})
            return
        self.prs.pull_closed(pool_name, event.repo, head_ref=event.head_ref, merged=event.merged)

    @staticmethod
    def is_our_pull(event: PullRequestEvent, current: states.RollbackState) -> bool:
        """Only the recorded PR, from the repository itself (not a fork's branch of the same name), opened by the
        App's bot moves the state: anyone can open a PR whose head is named runnerguard/rollback/<pool>."""
        if event.head_ref.startswith(ROLLBACK_PREFIXES[0]):
            number = current.pr_number if current.state == states.PR_OPEN else None
        else:
            number = current.restore_pr_number if current.state == states.RESTORING else None
        if number is None or event.number != number:
            return False
        if event.head_repo_id is None or event.head_repo_id != event.repo_id:
            return False
        if current.pr_author is not None:
            return event.author == current.pr_author
        # A PR recorded before authors were kept: at least an App's bot (only Apps get "[bot]" logins).
        return bool(event.author and event.author.endswith("[bot]"))
