"""Attribute a failed job: gather its evidence once (payload, annotations, run, twins, host, watchdog), store a cause.

Idempotent: every input is stored the first time it is read (runnerguard/store/causes.py), so a replay computes the
same cause; a hosted twin completing later recomputes the pool jobs of its group, which moves them to `code` once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from config import Policy
from runnerguard.domain import causes as rules
from runnerguard.domain.events import WorkflowJobEvent
from runnerguard.domain.rules import CountingRule
from runnerguard.errors import Unavailable
from runnerguard.github import GitHubApp, NotFound
from runnerguard.store import causes as store
from runnerguard.store import hosts, jobstore, watchdog

log = logging.getLogger("runnerguard.causes")


@dataclass
class Attribution:
    redis: redis.Redis
    policy: Policy
    github: GitHubApp | None
    retention_seconds: int
    clock: Callable[[], float]

    @property
    def rule(self) -> CountingRule:
        return self.policy.rollback.failure_rate.counting

    def attribute(self, payload: Mapping[str, Any]) -> set[str]:
        """Compute (or confirm) the cause of the delivery's job; the pools whose counts may have moved."""
        event = WorkflowJobEvent.parse(payload)
        job = payload.get("workflow_job") or {}
        found = jobstore.load(self.redis, [f"{event.repo_id}:{event.job_id}"])
        if not found or found[0].get("completed_ts") is None:
            raise Unavailable("the job's record is not written yet")  # the timeline task runs first: retried
        record = found[0]
        pools = set(record.get("pools") or ())
        if pools and not self.rule.count_forks:
            self._fork(event, record)
        if record.get("conclusion") not in rules.FAILING:
            if pools:
                jobstore.reindex(self.redis, record, rule=self.rule, retention_seconds=self.retention_seconds,
                                 now=self.clock())
            return pools
        head_sha = job.get("head_sha") if isinstance(job.get("head_sha"), str) else ""
        digest = store.twin_digest(record.get("workflow"), record.get("name"), head_sha) if head_sha else None
        previous = store.load(self.redis, event.repo_id, event.job_id)
        inputs = (previous or {}).get("inputs") or self._inputs(event, job, record)
        if digest is not None:
            store.add_twin(self.redis, event.repo_id, digest, event.job_id, {
                "pools": sorted(pools), "failed_step": inputs.get("failed_step"),
                "runner": _runner_label(record), "completed_ts": record["completed_ts"]})
        moved = set()
        if pools:
            self._save(record, inputs, digest)
            moved |= pools
        if digest is not None:
            moved |= self._recompute_group(event.repo_id, digest, record)
        return moved

    # --- inputs ---------------------------------------------------------------------------------------------------

    def _inputs(self, event: WorkflowJobEvent, job: Mapping[str, Any], record: dict[str, Any]) -> dict[str, Any]:
        steps = rules.steps_from_payload(job.get("steps"))
        if not steps and job.get("steps") is None and record.get("runner_name") and self.github is not None:
            try:  # older payloads carry no steps: the REST job does
                steps = tuple(rules.StepFact(s.name, s.status, s.conclusion)
                              for s in self.github.for_repo(event.repo).get_job(event.repo, event.job_id).steps)
            except NotFound:
                steps = ()
        failed = rules.failed_step(steps)
        return {"conclusion": record.get("conclusion"), "runner_name": record.get("runner_name"),
                "steps": [[s.name, s.status, s.conclusion] for s in steps],
                "failed_step": failed.name if failed is not None and not rules.is_runner_step(failed.name) else None}

    def _messages(self, record: dict[str, Any]) -> list[str]:
        """The check-run annotations' texts, fetched at most once per failed job (the job id is the check run's)."""
        repo_id, job_id = record["repo_id"], record["job_id"]
        cached = store.cached_annotations(self.redis, repo_id, job_id)
        if cached is not None or self.github is None:
            return cached or []
        try:
            # RateLimited past the client's own wait propagates: the task is retried later, nothing is cached.
            annotations = self.github.for_repo(record["repo"]).list_annotations(record["repo"], job_id)
        except NotFound:
            annotations = []
        messages = [" ".join(x for x in (a.title, a.message) if x) for a in annotations]
        store.save_annotations(self.redis, repo_id, job_id, messages)
        return messages

    def _fork(self, event: WorkflowJobEvent, record: dict[str, Any]) -> bool | None:
        """Whether the job's run came from a fork: GET .../runs/{id} once per run, cached."""
        cached = store.cached_fork(self.redis, event.repo_id, event.run_id)
        if cached is not None or self.github is None:
            return cached
        try:
            run = self.github.for_repo(event.repo).get_run(event.repo, event.run_id)
        except NotFound:
            return None  # nothing known: the seed's rule (it counts)
        store.save_fork(self.redis, event.repo_id, event.run_id, run.from_fork)
        return run.from_fork

    def _host(self, record: dict[str, Any]) -> rules.HostFact | None:
        repo_id, job_id = record["repo_id"], record["job_id"]
        cached = store.cached_host_fact(self.redis, repo_id, job_id)
        if cached is None:
            cached = self._host_now(record) or {}
            store.save_host_fact(self.redis, repo_id, job_id, cached)
        return rules.HostFact(**cached) if cached else None

    def _host_now(self, record: dict[str, Any]) -> dict[str, Any] | None:
        runner = record.get("runner_name") or ""
        if not runner:
            return None
        names = [h for p in self.policy.pools if p.name in (record.get("pools") or ()) for h in p.hosts]
        host = next((h for h in names if runner == h or runner.startswith(f"{h}-")), None)
        if host is None:
            return None
        status = hosts.get_status(self.redis, self.policy, host, now=record["completed_ts"])
        if status is None:
            return None
        over = next((path for path, d in (status.disk or {}).items()
                     if isinstance(d, Mapping) and (d.get("used_ratio") or 0) >= status.cleanup_at), None)
        return {"host": host, "state": status.state, "runner": status.runner, "disk_over": over}

    # --- the cause ------------------------------------------------------------------------------------------------

    def _save(self, record: dict[str, Any], inputs: dict[str, Any], digest: str | None) -> rules.Cause:
        window = self.policy.failure_rate_for((record.get("pools") or [""])[0]).window_seconds
        twins = []
        if digest is not None:
            mine = set(record.get("pools") or ())
            for job_id, info in store.twins_of(self.redis, record["repo_id"], digest).items():
                if job_id == record["job_id"] or mine & set(info.get("pools") or ()):
                    continue  # itself, or a job of the same pool: only a runner outside the pool is a twin
                if abs(float(info.get("completed_ts") or 0) - record["completed_ts"]) > window:
                    continue
                twins.append(rules.Twin(job_id, str(info.get("runner") or "another runner"), info.get("failed_step")))
        facts = rules.Facts(
            conclusion=str(inputs.get("conclusion")), runner_name=inputs.get("runner_name"),
            steps=tuple(rules.StepFact(*s) for s in inputs.get("steps") or ()),
            messages=tuple(self._messages(record)), twins=tuple(twins), host=self._host(record),
            watchdog=watchdog.load(self.redis, record["repo_id"], record["job_id"]),
        )
        cause = rules.classify(facts)
        data = {"cause": cause.cause, "evidence": cause.evidence, "kind": cause.kind, "step": cause.step,
                "person": bool(cause.extra.get("person")), "fork": store.cached_fork(
                    self.redis, record["repo_id"], int(record.get("run_id") or 0)),
                "twin": cause.extra.get("twin"), "inputs": inputs, "digest": digest}
        store.save(self.redis, record, data, rule=self.rule, retention_seconds=self.retention_seconds,
                   now=self.clock())
        store.meter_once(self.redis, record, cause.cause)
        return cause

    def _recompute_group(self, repo_id: int, digest: str, arrived: dict[str, Any]) -> set[str]:
        """A failed job outside a pool is a twin for the pool jobs of its group: recompute those not yet `code`."""
        mine = set(arrived.get("pools") or ())
        moved: set[str] = set()
        for job_id, info in store.twins_of(self.redis, repo_id, digest).items():
            pools = set(info.get("pools") or ())
            if job_id == arrived["job_id"] or not pools or pools & mine:
                continue
            previous = store.load(self.redis, repo_id, job_id)
            if previous is None or previous.get("cause") == rules.CODE:
                continue  # not attributed yet (its own task will see this twin), or already moved once
            found = jobstore.load(self.redis, [f"{repo_id}:{job_id}"])
            if not found:
                continue
            if self._save(found[0], previous["inputs"], digest).cause != previous.get("cause"):
                log.info("cause updated by a twin", extra={"job_id": job_id, "status": rules.CODE})
                moved |= pools
        return moved


def _runner_label(record: Mapping[str, Any]) -> str:
    labels = [str(label) for label in record.get("labels") or ()]
    return labels[0] if len(labels) == 1 else str(record.get("runner_name") or ", ".join(labels) or "another runner")
