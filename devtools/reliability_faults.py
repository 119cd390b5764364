"""The fault runs: a worker SIGKILLed mid-task, GitHub failing during a rollback, shuffled deliveries."""

from __future__ import annotations

import logging
import random
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from rq import Queue
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from devtools import reliability_tasks as tasks
from devtools.github_simulator import SimulatorServer
from devtools.reliability_checks import (
    Row,
    completed_jobs,
    diff_snapshots,
    finish_load,
    jobs_counted,
    missing,
    not_exactly_once,
    start_load,
    state_snapshot,
    timeline_mismatches,
)
from devtools.reliability_load import Delivery, conclusion_for, encode, job_payloads, lifecycles, run_paced
from devtools.reliability_stack import Stack, wait_for
from runnerguard.queue import tasks as rq_tasks
from runnerguard.queue.tasks import TIMINGS
from runnerguard.queue.worker import MAINTENANCE_EVERY
from runnerguard.store import deliveries, rollback_state
from runnerguard.store.deliveries import Delivery as Recorded

TASK_RETRY, TASK_TIMEOUT = TIMINGS.rq_retry(), TIMINGS.timeout

QUEUES = ("events", "github")
RETRY_TARGET = 120.0  # seconds from the kill to the task done again (issue 8)


def worker_kill(*, quick: bool, burst: int = 300, rate: float = 200.0) -> Row:
    """SIGKILL a worker while its task is past its timeline write; a fresh worker retries it, nothing counts twice.

    Full: real time (RQ finds the dead execution once its TTL has passed, the dead worker's scheduler lock expires).
    Quick: both expiries are simulated (the lock deleted, the registry cleaned with a timestamp 120 s ahead).
    """
    row = Row("worker SIGKILL" + (" (simulated time)" if quick else ""),
              f"worker SIGKILLed mid-task during a {burst}-delivery burst; retried by a fresh worker within "
              f"{RETRY_TARGET:.0f} s, nothing counted twice")
    tag = f"wk{time.time_ns()}"
    with Stack() as stack:
        first = stack.start_worker(tasks.QUEUE, *QUEUES, argv=tasks.TEST_WORKER)
        plan = lifecycles(burst, tag=tag)
        job_id = 10**6
        # A success: a failed job is counted in jobs_total by its cause task (issue #14), which this test-only
        # routing (the timeline task alone) never queues.
        lifecycle = job_payloads(job_id, "success", created=time.time() - 900)
        plan += [Delivery(f"{tag}-slow-{i}", job_id, p["action"], encode(p)) for i, p in enumerate(lifecycle[:2])]
        slow = Delivery(f"{tag}-slow-2", job_id, "completed", encode(lifecycle[2]))
        load = start_load(stack, plan, rate, "kill")
        time.sleep(0.5)
        # Recorded as the intake records it, but routed to the test-only task instead of the timings task.
        pipe = stack.client.pipeline(transaction=True)
        deliveries.record(pipe, Recorded(guid=slow.guid, event="workflow_job", body=slow.body, received_at=time.time(),
                                         action="completed", repo="octo/fleet", tasks=("timings",)))
        pipe.execute()
        rq_tasks.queue(tasks.QUEUE, stack.client).enqueue(
            "devtools.reliability_tasks.record_then_linger", slow.guid, 3600.0, job_id=f"{slow.guid}_slow",
            retry=TASK_RETRY, job_timeout=TASK_TIMEOUT, result_ttl=0)
        wait_for(lambda: stack.client.hexists(tasks.LINGERING, slow.guid), timeout=30, what="the task lingering")
        started = float(stack.client.hget(tasks.LINGERING, slow.guid))  # type: ignore[arg-type]
        stack.kill_worker(first)
        killed = time.time()
        expires = stack.simulate_expiry((tasks.QUEUE, *QUEUES)) if quick else 0.0
        stack.start_worker(tasks.QUEUE, *QUEUES, argv=tasks.TEST_WORKER)
        answers = finish_load(stack, load, "kill", timeout=len(plan) / rate + 60)
        wait_for(lambda: stack.client.hexists(tasks.FINISHED, slow.guid), timeout=20 if quick else 450,
                 what="the killed task retried and finished")
        finished_raw: bytes = stack.client.hget(tasks.FINISHED, slow.guid)  # type: ignore[assignment]
        retried = float(finished_raw.split(b":")[0]) - killed
        if quick:
            # At best, in real time: the execution expires, the next maintenance pass (every 20 s if the worker
            # runs it that often) retries it after the first retry interval, and the task runs as it just did.
            retried += expires - killed + MAINTENANCE_EVERY + TASK_RETRY.intervals[0]
        guids = [d.guid for d in plan]
        drained = stack.wait_done([*guids, slow.guid], timeout=60)
        runs = int(stack.client.hget(tasks.RUNS, slow.guid) or 0)  # type: ignore[arg-type]
        done_marks = sum(1 for a in deliveries.attempts(stack.client, slow.guid) if a["state"] == deliveries.DONE)
        lost = missing(stack.client, [a.guid for a in answers if a.status == 202])
        twice = not_exactly_once(stack.client, guids)
        wrong = timeline_mismatches(stack.client, [*plan, slow])
        counted, finished = jobs_counted(stack.client), completed_jobs([*plan, slow])
    statuses = Counter(a.status for a in answers)
    row.need(set(statuses) <= {202}, f"burst answers {dict(statuses)}")
    row.need(runs == 2 and done_marks == 2, f"the task ran {runs} times ({done_marks} done marks), expected 2")
    row.need(retried < RETRY_TARGET, f"retried {retried:.0f} s after the kill (target {RETRY_TARGET:.0f})")
    row.need(counted == finished, f"jobs_total {counted} != {finished} finished jobs")
    row.need(not lost and not twice and not wrong, f"lost {lost[:3]}, not once {twice[:3]}, timeline {wrong[:3]}")
    row.lost = len(lost)
    row.figures = (f"killed in the task's tail ({killed - started:.1f} s after its timeline write); retried and done "
                   f"{retried:.0f} s after the kill"
                   f"{' at the earliest (registry expiry + a maintenance pass; time simulated)' if quick else ''}; "
                   f"task ran {runs}x, "
                   f"jobs counted {counted} for {finished} finished; "
                   f"{len(guids)} burst deliveries each done once; drained {drained:.1f} s")
    row.data = {"retry_after_kill_s": round(retried, 1), "runs": runs, "done_marks": done_marks,
                "jobs_total": counted, "finished": finished, "lost": lost, "statuses": dict(statuses)}
    return row


WORKFLOW = ("name: CI\non: [push]\njobs:\n  build:\n    runs-on: [self-hosted, Linux, X64]\n    steps:\n"
            "      - run: make test\n")
REPO = "octo-org/hello-world"
APP_ID = 4242


def _rollback(key_path: Path, public_pem: bytes, *, faults: bool, quick: bool) -> dict[str, object]:
    """21 finished jobs, 13 failed, through the real stack; GitHub is the simulator, failing on request."""
    with SimulatorServer(app_id=APP_ID, app_public_key_pem=public_pem, timeout_delay=1.0 if quick else 3.0) as sim:
        sim.add_repo(REPO, {".github/workflows/ci.yml": WORKFLOW, "README.md": "hi\n"})
        sim.install([REPO])
        env = {"GITHUB_APP_ID": str(APP_ID), "GITHUB_PRIVATE_KEY_PATH": str(key_path), "GITHUB_API_URL": sim.url}
        with Stack(extra_env=env) as stack:
            stack.start_worker(*QUEUES)
            injected = 0
            if faults:
                n = 1 if quick else 2
                # on the rollback's own calls (/git/...), not on the cause tasks' lookups that come first
                sim.fail_next(n, 502, match="/git/")
                sim.fail_next(n, "timeout", match="/git/")
                sim.fail_next(n, "secondary", retry_after=1.0, match="/git/")
                sim.fail_next(1, 503, match="/pulls")
                injected = 3 * n + 1
            now = time.time()
            plan = [Delivery(f"gh{int(faults)}-{j}-{i}", j, p["action"], encode(p)) for j in range(1, 22)
                    for i, p in enumerate(job_payloads(j, "failure" if j <= 13 else "success", created=now - 7200 + j,
                                                       repo=REPO, repo_id=77))]
            started = time.monotonic()
            answers = run_paced(stack.web_port, stack.secret, [(d.guid, d.body) for d in plan], 200.0)
            wait_for(lambda: len(sim.pulls(REPO)) >= 1, timeout=60 if quick else 240, what="the PR")
            pr_after = time.monotonic() - started  # from the first delivery sent
            stack.wait_done([d.guid for d in plan], timeout=60)
            wait_for(lambda: _github_idle(stack), timeout=120, what="the github queue idle")
            time.sleep(1.0)  # a second PR, if any, would be opened by now: the queue is empty
            state = rollback_state.load(stack.client, "self-hosted", REPO)
            posts = [r.status for r in sim.requests if r.method == "POST" and r.path.endswith("/pulls")]
            # the cause tasks ask for runs, jobs and annotations the simulator does not have (404): not injected
            failed = dict(Counter(r.status for r in sim.requests if r.status >= 400
                                  and not re.search(r"/actions/(runs|jobs)/|/check-runs/", r.path)))
            return {"pulls": len(sim.pulls(REPO)), "pr_s": round(pr_after, 1), "injected": injected,
                    "unconsumed": len(sim.failures), "pull_posts": posts, "failed": failed, "state": state.state,
                    "statuses": dict(Counter(a.status for a in answers))}


def _github_idle(stack: Stack) -> bool:
    queue = Queue("github", connection=stack.client)
    return (queue.count == 0 and StartedJobRegistry("github", connection=stack.client).count == 0
            and ScheduledJobRegistry("github", connection=stack.client).count == 0)


def github_faults(*, quick: bool) -> Row:
    row = Row("github faults", "GitHub answering 5xx, timeouts and secondary rate limits during a rollback: one PR, "
              "opened late")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the simulator's access log: not the table's business
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    with tempfile.TemporaryDirectory(prefix="runnerguard-reliability-key-") as tmp:
        key_path = Path(tmp) / "app.pem"
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_path.chmod(0o600)
        # The fault-free baseline shows how late "late" is; the quick run skips it to stay quick.
        base = None if quick else _rollback(key_path, public_pem, faults=False, quick=quick)
        hit = _rollback(key_path, public_pem, faults=True, quick=quick)
    for name, run in (("baseline", base), ("faulted", hit)):
        if run is None:
            continue
        row.need(run["pulls"] == 1, f"{name}: {run['pulls']} PRs")
        row.need(run["state"] == "pr_open", f"{name}: rollback state {run['state']}")
        row.need(run["statuses"] == {202: 63}, f"{name}: webhook answers {run['statuses']}")
    row.need(hit["unconsumed"] == 0, f"{hit['unconsumed']} injected failures never reached (nothing was tested)")
    late = "" if base is None else f", {float(hit['pr_s']) - float(base['pr_s']):+.1f} s late"  # type: ignore[arg-type]
    row.figures = ((f"no faults: 1 PR {base['pr_s']} s after the first delivery; " if base else "")
                   + f"{hit['injected']} injected failures: 1 PR {hit['pr_s']} s after it{late}; GitHub's error "
                   f"answers by status {hit['failed']}; POST /pulls answered {hit['pull_posts']}")
    row.data = {"baseline": base, "faulted": hit}
    return row


def ordering(*, jobs: int = 100, rate: float = 200.0) -> Row:
    """The same deliveries shuffled, replayed and redelivered across two workers (one clock 2 min behind), with
    started_at before created_at on a quarter of the jobs, end in the state an ordered stream leaves."""
    row = Row("ordering", f"{jobs} jobs' deliveries shuffled, 25% replayed, 10% redelivered, skewed timestamps, "
              "two workers (one clock -120 s): same state as in order on one worker")
    now = time.time()
    base = [Delivery(f"ord-{j}-{i}", j, p["action"], encode(p)) for j in range(1, jobs + 1)
            for i, p in enumerate(job_payloads(j, conclusion_for(j), created=now - 7200 + j * 7,
                                               skew=90.0 if j % 4 == 0 else 0.0))]
    rng = random.Random(8)
    # A replay here is the same event re-sent as a new delivery (its body re-encoded: one more byte of whitespace),
    # so it is processed twice; the very same signed bytes under a new id would be refused as a captured replay.
    replays = [Delivery(d.guid + "-replay", d.job_id, d.action, d.body + b" ")
               for d in rng.sample(base, len(base) // 4)]
    resent = rng.sample(base, len(base) // 10)  # same delivery id: GitHub's redelivery, answered 200 duplicate
    shuffled = base + replays + resent
    rng.shuffle(shuffled)
    with Stack() as stack:
        stack.start_worker(*QUEUES)
        answers = finish_load(stack, start_load(stack, base, rate, "ordered"), "ordered", timeout=120)
        stack.wait_done([d.guid for d in base], timeout=120)
        ordered = state_snapshot(stack.client)
        ordered_statuses = Counter(a.status for a in answers)
    with Stack() as stack:
        stack.start_worker(*QUEUES)
        stack.start_worker(*QUEUES, argv=("-m", "devtools.reliability_tasks", "--clock-skew=-120"))
        answers = finish_load(stack, start_load(stack, shuffled, rate, "shuffled"), "shuffled", timeout=120)
        stack.wait_done([d.guid for d in base + replays], timeout=120)
        mixed = state_snapshot(stack.client)
        statuses = Counter(a.status for a in answers)
    differences = diff_snapshots(ordered, mixed)
    row.need(ordered_statuses == {202: len(base)}, f"ordered run answered {dict(ordered_statuses)}")
    row.need(statuses == {202: len(base) + len(replays), 200: len(resent)}, f"shuffled run answered {dict(statuses)}")
    row.need(len(ordered["records"]) == jobs, f"{len(ordered['records'])} jobs recorded of {jobs}")
    row.need(not differences, f"{len(differences)} differences: {differences[:3]}")
    row.figures = (f"{len(shuffled)} deliveries ({len(replays)} replays, {len(resent)} redeliveries -> 200); "
                   f"{len(ordered['records'])} records, {sum(len(v) for v in ordered['indexes'].values())} index "
                   f"entries, {len(ordered['counters'])} counters compared: {len(differences)} differences")
    row.data = {"differences": differences[:20], "window": list(mixed["window"])}
    return row
