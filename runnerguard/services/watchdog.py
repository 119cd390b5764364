"""The job watchdog: cancel a job past its pool's max_run (force-cancel it later), re-run a runner-lost job once.

Every GitHub call that changes something is claimed in store.watchdog *before* it is made, so it is made at most
once per job across sweeps, workers, replays and restarts. A call GitHub refused outright (403, 429) releases its
claim; one whose answer was lost keeps it (it may have worked: GitHub's 409 or "already running" on the transport's
retry says it did). Before cancelling, the job is read back from GitHub: a run is cancelled only while the job
itself is still running, and a completion the webhooks never brought is recorded instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runnerguard.domain import watchdog as rules
from runnerguard.domain.pools import Pool
from runnerguard.github import Conflict, Forbidden, GitHubError, NotRerunnable, RateLimited
from runnerguard.services.rollback import RollbackService
from runnerguard.services.watchdog_calls import SweepReport, WatchdogCalls
from runnerguard.services.watchdog_rest import StrandedReport, find_stranded, record_answer
from runnerguard.store import jobstore
from runnerguard.store import rollback_state as states
from runnerguard.store import watchdog as store

RUNNING_READ = 200  # overdue jobs read per pool and sweep
RERUN_WINDOW = 6 * 3600  # failed jobs looked at for a re-run: completed this recently
RERUN_READ = 200
CLAIMS = {rules.CANCEL: "cancelled_at", rules.FORCE_CANCEL: "forced_at", rules.RERUN: "rerun_at"}
__all__ = ["StrandedReport", "SweepReport", "Watchdog", "failure_cause"]


def failure_cause(record: Mapping[str, Any]) -> str | None:
    """The cause the attribution (issue #14) puts on every job record: "runner", "code", "timeout", "unknown"."""
    cause = record.get("failure_cause")
    return cause if isinstance(cause, str) else None


@dataclass
class Watchdog(WatchdogCalls):
    # The seam to the attribution's causes; tests before #14 lands pass their own (see tests/test_watchdog.py).
    cause_of: Callable[[Mapping[str, Any]], str | None] = failure_cause

    # --- 1. timeouts ----------------------------------------------------------------------------------------------

    def sweep_timeouts(self) -> SweepReport:
        """Every pool with a max_run: cancel its overdue jobs, force-cancel those still running force_after later."""
        report = SweepReport()
        for pool in self.policy.all_pools:
            if pool.max_run_seconds is None:
                continue
            now = self.clock()
            members = jobstore.running_before(self.redis, pool.name, now - pool.max_run_seconds, RUNNING_READ)
            records = jobstore.load(self.redis, members)
            marks = store.load_many(self.redis, [(r["repo_id"], r["job_id"]) for r in records])
            for record, mark in zip(records, marks, strict=True):
                self._timeout(pool, record, mark or {}, now, report)
        return report

    def _timeout(self, pool: Pool, record: dict[str, Any], mark: Mapping[str, Any], now: float,
                 report: SweepReport) -> None:
        if record.get("completed_ts") is not None or "forced_at" in mark:
            return  # ended, or nothing more the watchdog can do: the stranded check records its end
        if "cancelled_at" in mark:
            if not rules.force_due(mark["cancelled_at"], now=now, force_after=pool.force_after_seconds):
                return
            action = rules.FORCE_CANCEL
        elif rules.overdue(record.get("started_ts"), now=now, max_run=pool.max_run_seconds):
            action = rules.CANCEL
        else:
            return
        client = self._client_for(record, pool, action, now, report)
        if client is None:
            return
        try:
            job = client.get_job(record["repo"], record["job_id"])
        except Forbidden as exc:
            self._blocked(record, pool, action, exc, now=now, report=report)
            return
        except GitHubError as exc:
            self._failed(record, action, exc, report)
            return
        if job.status == "completed":
            # It ended and no webhook told us: record the end instead of cancelling a run that moved on.
            record_answer(self.redis, self.policy, job, record, now=now, retention_seconds=self.retention_seconds)
            report.recorded.append(record["job_id"])
            return
        ran = now - float(record["started_ts"])
        reason = rules.CANCEL_REASON.format(ran=rules.duration_text(ran), pool=pool.name,
                                            limit=rules.duration_text(pool.max_run_seconds or 0))
        if not store.claim(self.redis, record["repo_id"], record["job_id"], CLAIMS[action], at=now, reason=reason):
            report.skipped += 1  # another worker (or an earlier try of this sweep) made this call
            return
        call = client.cancel_run if action == rules.CANCEL else client.force_cancel_run
        try:
            call(record["repo"], int(record["run_id"]))
            status = 202
        except Conflict:
            status = 409  # the run completed: by our call whose answer was lost, or by itself; done either way
        except (Forbidden, RateLimited) as exc:
            store.release(self.redis, record["repo_id"], record["job_id"], CLAIMS[action])
            if isinstance(exc, Forbidden):
                self._blocked(record, pool, action, exc, now=now, report=report)
            else:
                self._failed(record, action, exc, report)
            return
        except GitHubError as exc:
            # No answer: the call may have worked, so it is not made again (a cancel's safety net is the force).
            store.note(self.redis, record["repo_id"], record["job_id"], {f"{action}_error": type(exc).__name__})
            self._failed(record, action, exc, report)
            return
        self._done(record, pool, action, status, now=now, report=report,
                   words={"ran": rules.duration_text(ran), "limit": rules.duration_text(pool.max_run_seconds or 0),
                          "after": rules.duration_text(now - float(mark.get("cancelled_at", now)))})

    # --- 2. stranded jobs -----------------------------------------------------------------------------------------

    def find_stranded(self) -> StrandedReport:
        def forbidden(record: dict[str, Any], exc: Forbidden) -> None:
            pools = [p for p in self.policy.all_pools if p.name in (record.get("pools") or ())]
            self._blocked(record, pools[0] if pools else None, "read", exc, now=self.clock(), report=SweepReport())

        return find_stranded(self.redis, self.policy, self.app, now=self.clock(),
                             retention_seconds=self.retention_seconds, on_forbidden=forbidden)

    # --- 3. one more try for a runner-lost job --------------------------------------------------------------------

    def rerun_runner_failures(self) -> SweepReport:
        """Re-run, once, each recently failed first attempt whose cause is the runner, where its pools are healthy."""
        report = SweepReport()
        rollbacks = RollbackService(redis=self.redis, policy=self.policy, github=None, clock=self.clock)
        failing: dict[str, bool] = {}
        for pool in self.policy.all_pools:
            if pool.retry_runner_failures < 1:
                continue
            now = self.clock()
            records = jobstore.failed_jobs(self.redis, pool.name, now - RERUN_WINDOW, RERUN_READ)
            marks = store.load_many(self.redis, [(r["repo_id"], r["job_id"]) for r in records])
            for record, mark in zip(records, marks, strict=True):
                if mark and ("rerun_at" in mark or "rerun_skipped" in mark):
                    continue
                pools = [p for p in self.policy.all_pools if p.name in (record.get("pools") or ())]
                if rules.rerun_refusal(record, self.cause_of(record), pools) is not None:
                    continue
                # A failing pool would take the retry on the same broken runner: not while it fails.
                if any(self._failing(rollbacks, p, record["repo"], failing) for p in pools):
                    report.skipped += 1
                    continue
                self._rerun(pool, record, now, report)
        return report

    def _failing(self, rollbacks: RollbackService, pool: Pool, repo: str, seen: dict[str, bool]) -> bool:
        if pool.name not in seen:
            seen[pool.name] = rollbacks.failure_rate_decision(pool).fire
        return seen[pool.name] or states.load(self.redis, pool.name, repo).state != states.HEALTHY

    def _rerun(self, pool: Pool, record: dict[str, Any], now: float, report: SweepReport) -> None:
        client = self._client_for(record, pool, rules.RERUN, now, report)
        if client is None:
            return
        try:
            run = client.get_run(record["repo"], int(record["run_id"]))
        except GitHubError as exc:
            self._failed(record, rules.RERUN, exc, report)
            return
        if run.run_attempt != 1:
            # Someone re-ran it already (by hand, or the whole run): one more try is all the watchdog gives.
            store.note(self.redis, record["repo_id"], record["job_id"], {"rerun_skipped": f"attempt {run.run_attempt}"})
            return
        if run.status != "completed":
            report.skipped += 1  # GitHub re-runs a job only once its run has ended: the next sweep tries again
            return
        if not store.claim(self.redis, record["repo_id"], record["job_id"], "rerun_at", at=now):
            report.skipped += 1
            return
        try:
            client.rerun_job(record["repo"], record["job_id"])
            status = 201
        except NotRerunnable as exc:
            # After a lost answer the transport's retry meets "already running": the first call worked. Either
            # way GitHub will not take another, so the claim stays.
            store.note(self.redis, record["repo_id"], record["job_id"], {"rerun_error": exc.message[:200]})
            status = 403
        except (Forbidden, RateLimited) as exc:
            store.release(self.redis, record["repo_id"], record["job_id"], "rerun_at")
            if isinstance(exc, Forbidden):
                self._blocked(record, pool, rules.RERUN, exc, now=now, report=report)
            else:
                self._failed(record, rules.RERUN, exc, report)
            return
        except GitHubError as exc:
            store.note(self.redis, record["repo_id"], record["job_id"], {"rerun_error": type(exc).__name__})
            self._failed(record, rules.RERUN, exc, report)
            return
        if status == 403:
            report.skipped += 1
            return
        self._done(record, pool, rules.RERUN, status, now=now, report=report,
                   words={"evidence": str(record.get("failure_evidence") or "runner lost")[:200]})
