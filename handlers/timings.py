"""Record the timeline of every workflow job: queue wait, run time, conclusion, per pool and repo."""

from __future__ import annotations

from handlers.runtime import Runtime, delivery_task
from runnerguard.domain.pools import pools_for
from runnerguard.domain.timeline import PayloadError, parse_workflow_job
from runnerguard.queue.routing import Router
from runnerguard.store import deliveries, jobstore
from runnerguard.store.deliveries import Delivery

router = Router()


def counting_rule(rt: Runtime) -> jobstore.CountingRule:
    rule = rt.policy.rollback.failure_rate
    return jobstore.CountingRule(failed=frozenset(rule.failed_conclusions), ignored=frozenset(rule.ignored_conclusions))


@router.register("workflow_job", name="timings", queue="events", wrap=delivery_task)
def record_job(delivery: Delivery, rt: Runtime) -> bool:
    try:
        payload = delivery.payload()
    except ValueError as exc:
        raise PayloadError(f"body is not JSON: {exc}") from None
    snapshot = parse_workflow_job(payload)
    jobstore.upsert(
        rt.redis,
        snapshot,
        # The delivery's own received time, not the processing time, so a replay changes nothing.
        seen_at=delivery.received_at,
        pools=pools_for(snapshot.job["labels"], rt.policy.pools),
        rule=counting_rule(rt),
        retention_seconds=rt.settings.job_retention_seconds,
        now=rt.clock(),
        # The delivery's "done" goes in the same atomic write as the timeline: one round trip fewer per event.
        also=lambda pipe: deliveries.mark_task_on(pipe, delivery.guid, "timings", deliveries.DONE, now=rt.clock()),
    )
    return True
