"""`python -m devtools.reliability [--quick]`: load, fault and abuse runs against real processes, one table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from rq import Queue
from rq.registry import StartedJobRegistry

from devtools import reliability_faults as faults
from devtools import reliability_hosts
from devtools.redis_server import find_redis_server
from devtools.reliability_checks import (
    Row,
    completed_jobs,
    done_profile,
    finish_load,
    jobs_counted,
    latency_figures,
    missing,
    not_exactly_once,
    run_load,
    start_load,
    timeline_mismatches,
)
from devtools.reliability_load import lifecycles, send_one
from devtools.reliability_stack import ROOT, Stack, wait_for
from devtools.reliability_tasks import HOLDING, TEST_WORKER
from runnerguard.queue import tasks as rq_tasks
from runnerguard.queue.tasks import TIMINGS

TASK_RETRY, TASK_TIMEOUT = TIMINGS.rq_retry(), TIMINGS.timeout


ABUSE_SUITES = ("tests/test_webhooks_hostile.py", "tests/test_admin_api_fuzz.py")


def load(*, count: int = 2000, rate: float = 200.0, fsync: str = "everysec") -> Row:
    """Steady paced load through gunicorn and one worker: every delivery acked, recorded, processed once."""
    row = Row(f"load ({fsync})" if fsync != "everysec" else "load",
              f"{count} signed deliveries at {rate:g}/s from a separate process: all 202, recorded, processed "
              "exactly once, timeline as sent")
    with Stack(fsync=fsync) as stack:
        stack.start_worker("events", "github")
        plan = lifecycles(count, tag=f"load{time.time_ns()}")
        guids = [d.guid for d in plan]
        answers = run_load(stack, plan, rate, "load")
        statuses = Counter(a.status for a in answers)
        drained = stack.wait_done(guids, timeout=120)
        lost = missing(stack.client, guids)
        twice = not_exactly_once(stack.client, guids)
        wrong = timeline_mismatches(stack.client, plan)
        counted, finished = jobs_counted(stack.client), completed_jobs(plan)
        lat = latency_figures(answers)
    row.need(len(answers) == count, f"{count - len(answers)} requests got no record of an answer")
    row.need(set(statuses) <= {200, 202}, f"answers other than 202/200: {dict(statuses)}")
    row.need(not lost, f"{len(lost)} acked deliveries not recorded: {lost[:5]}")
    row.need(not twice, f"{len(twice)} deliveries not processed exactly once: {twice[:5]}")
    row.need(not wrong, f"timeline: {wrong[:3]}")
    row.need(counted == finished, f"jobs_total {counted} != {finished} finished jobs")
    row.lost = len(lost)
    row.figures = (f"{statuses.get(202, 0)}x202 {statuses.get(200, 0)}x200; ack p50 {lat['p50_ms']} ms, "
                   f"p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms; {lat['rate_per_s']}/s sent; queue drained "
                   f"{drained:.1f} s after the last ack; {finished} jobs counted once")
    row.data = {**lat, "statuses": dict(statuses), "drain_s": round(drained, 2), "jobs": finished}
    return row


def redis_restart(*, count: int = 1600, rate: float = 200.0, kill_after: float = 3.0, outage: float = 2.0,
                  fsync: str = "everysec", quick: bool = False) -> Row:
    """SIGKILL redis-server mid-load, restart it on the same port and AOF: 503s meanwhile, no 500, nothing lost."""
    row = Row("redis restart" + (f" ({fsync})" if fsync != "everysec" else ""),
              f"redis-server SIGKILLed {kill_after:g} s into {rate:g}/s with a task in flight, back {outage:g} s "
              f"later (AOF {fsync}): outage answers 503, never 500; web and worker recover without restarts; "
              "every 202 still in Redis")
    with Stack(fsync=fsync) as stack:
        worker = stack.start_worker("events", "github", argv=TEST_WORKER)
        plan = lifecycles(count, tag=f"rr{time.time_ns()}")
        guids = [d.guid for d in plan]
        process = start_load(stack, plan, rate, "restart")
        time.sleep(kill_after)
        # A task in flight when Redis dies, ending during the outage: what a worker idle in its wait never meets.
        held = rq_tasks.queue("events", stack.client).enqueue(
            "devtools.reliability_tasks.hold", outage / 2, job_id=f"hold-{time.time_ns()}", retry=TASK_RETRY,
            job_timeout=TASK_TIMEOUT, result_ttl=0)
        wait_for(lambda: stack.client.hexists(HOLDING, held.id), timeout=10, every=0.005, what="a task in flight")
        killed_at = time.time()
        stack.kill_redis()
        time.sleep(outage)
        replay_s = stack.restart_redis()
        back_at = time.time()
        answers = finish_load(stack, process, "restart", timeout=count / rate + 60)
        acked = [a.guid for a in answers if a.status == 202]
        lost = missing(stack.client, acked)  # before any worker or redelivery could write anything back
        refused = {a.guid for a in answers if a.status != 202}
        # GitHub redelivers what failed; do the same for the refused ones, so the end state can be checked whole.
        redelivered = Counter(send_one(stack.web_port, stack.secret, d.guid, d.body)[0]
                              for d in plan if d.guid in refused)
        events = Queue("events", connection=stack.client)
        wait_for(lambda: events.count == 0 or worker.poll() is not None, timeout=60, what="the events queue drained")
        worker_exit = worker.poll()
        if worker_exit is None:
            time.sleep(1.0)  # let the live worker finish the task it holds: what is left "started" was cut off
        cut_off = sum(StartedJobRegistry(q, connection=stack.client).count for q in ("events", "github"))
        if quick and cut_off:
            stack.simulate_expiry(("events", "github"))
        if worker_exit is not None:
            # Stand in for the supervisor (systemd Restart=always) so the rest can still be checked; started after
            # the simulated expiry, so that it takes the dead worker's scheduler lock at once.
            row.problems.append(f"the worker exited (code {worker_exit}) when Redis went away "
                                f"({_last_rq_error(stack.worker_log(0))}); only a supervisor's restart recovered it")
            stack.start_worker("events", "github")
        # A task cut off by the outage stays "started" until its execution TTL lets RQ retry it: for RQ's
        # SimpleWorker that is the job timeout + 60 s (360 s for our tasks), hence the long wait in the full run.
        try:
            drained = stack.wait_done(guids, timeout=30 if quick else 450)
        except TimeoutError as exc:
            drained = float("nan")
            row.problems.append(f"not everything was processed in the end: {exc}")
        never, rerun = done_profile(stack.client, guids)
        wrong = timeline_mismatches(stack.client, plan)
        counted = jobs_counted(stack.client)
    statuses = Counter(a.status for a in answers)
    at_risk = sum(1 for a in answers if a.status == 202 and killed_at - 1 <= a.due + a.latency <= killed_at)
    recovered = [a.due + a.latency - back_at for a in answers if a.status == 202 and a.due >= back_at]
    late_failures = [a for a in answers if a.due >= back_at + 1.0 and a.status != 202]
    row.need(statuses.get(503, 0) > 0, "no request met the outage (nothing was tested)")
    row.need(set(statuses) <= {202, 503}, f"answers other than 202/503: {dict(statuses)} "
             f"{[a.error for a in answers if a.status == 0][:2]}")
    row.need(not late_failures, f"{len(late_failures)} failures more than 1 s after Redis was back")
    row.need(not lost, f"{len(lost)} deliveries acked with 202 missing after the restart: {lost[:5]}")
    row.need(set(redelivered) <= {202}, f"redeliveries answered {dict(redelivered)}")
    row.need(not never, f"{len(never)} deliveries never processed: {never[:5]}")
    row.need(not wrong, f"timeline: {wrong[:3]}")
    row.need(counted == completed_jobs(plan), f"jobs_total {counted} != {completed_jobs(plan)} finished jobs")
    row.lost = len(lost)
    first_ok = min(recovered, default=float("nan"))
    row.figures = (f"{statuses.get(202, 0)}x202, {statuses.get(503, 0)}x503, {statuses.get(500, 0)}x500, "
                   f"{statuses.get(0, 0)} conn errors; web: first 202 {first_ok:.2f} s after restart (AOF load "
                   f"{replay_s:.2f} s); {at_risk} acked in the last 1 s before the kill, {len(lost)} of all acked "
                   f"lost; {sum(redelivered.values())} refused redelivered -> {dict(redelivered)}; worker "
                   f"{'exited' if worker_exit is not None else 'reconnected'}; {cut_off} cut-off task(s) retried"
                   f"{' (simulated expiry)' if quick and cut_off else ''} ({len(rerun)} ran twice, counted once), "
                   f"{len(never)} never done; drained {drained:.1f} s later")
    row.data = {"statuses": dict(statuses), "acked_last_second": at_risk, "lost": lost, "aof_load_s": round(
        replay_s, 3), "first_202_after_restart_s": round(first_ok, 3), "redelivered": dict(redelivered),
        "worker_exit": worker_exit, "cut_off": cut_off, "never_done": never, "ran_twice": len(rerun)}
    return row


def _last_rq_error(log: str) -> str:
    """RQ's own words from the worker's JSON log: why it quit."""
    for line in log.splitlines():
        if "unhandled exception" in line:
            try:
                record = json.loads(line)
            except ValueError:
                return line[:160]
            return f"rq: {record.get('msg', '')[-45:]} {record.get('exc', '')}".strip()
    return "no error logged"


def abuse() -> Row:
    """The hostile-input suites, run as they are in `make test`, with hypothesis' statistics counted."""
    row = Row("abuse", "hostile webhooks and admin API fuzzing (pytest + hypothesis): every input refused cleanly")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *ABUSE_SUITES, "-q", "-p", "no:cacheprovider",
         "--hypothesis-show-statistics"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )
    out = result.stdout + result.stderr
    summary = re.findall(r"(\d+) (passed|failed|skipped|error|errors)\b", out)
    counts = Counter({kind: int(n) for n, kind in summary})
    # Hypothesis reports per property test; the schemathesis runs nested inside a test add more, unreported.
    examples = sum(int(n) for n in re.findall(r"(\d+) passing(?: examples)?,", out))
    row.need(result.returncode == 0, f"pytest exited {result.returncode}: {out.strip().splitlines()[-1:]}")
    row.need(counts["passed"] > 0, "no test ran")
    row.figures = (f"{counts['passed']} tests passed, {counts['failed']} failed, {counts['skipped']} skipped; "
                   f"at least {examples} generated inputs tried; {time.monotonic() - started:.0f} s")
    row.data = {"tests": dict(counts), "examples": examples}
    return row


def scenarios(quick: bool, fsync_always: bool) -> list[tuple[str, Callable[[], Row]]]:
    if quick:
        plan: list[tuple[str, Callable[[], Row]]] = [
            ("load", lambda: load(count=300)),
            ("redis restart", lambda: redis_restart(count=600, kill_after=1.0, outage=2.0, fsync="always", quick=True)),
            ("worker kill", lambda: faults.worker_kill(quick=True)),
            ("github faults", lambda: faults.github_faults(quick=True)),
            ("ordering", lambda: faults.ordering(jobs=20)),
        ]
    else:
        plan = [
            ("load", load),
            # The project's Redis runs `appendfsync always` (deploy/redis.conf): with `everysec`, a slow disk lets
            # Redis postpone its AOF write by up to 2 s, and a redis-server crash then loses acknowledged deliveries.
            ("redis restart", lambda: redis_restart(fsync="always")),
            ("worker kill", lambda: faults.worker_kill(quick=False)),
            ("github faults", lambda: faults.github_faults(quick=False)),
            ("ordering", lambda: faults.ordering(jobs=100)),
            ("3 hosts, Sentinel", reliability_hosts.sentinel_hosts),  # network namespaces: needs root
        ]
    if fsync_always:
        plan[1:1] = [("load (always)", lambda: load(fsync="always"))]
    return [*plan, ("abuse", abuse)]


def print_table(rows: list[Row]) -> None:
    header = ("scenario", "checked", "figures", "lost", "result")
    cells = [(r.scenario, r.checked, r.figures, str(r.lost), "PASS" if r.ok else "FAIL") for r in rows]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)) + " |")
    for r in rows:
        for problem in r.problems:
            print(f"FAIL {r.scenario}: {problem}")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor() or "?") if os.path.exists("/proc/cpuinfo") else platform.processor()

    version = subprocess.run([find_redis_server(), "--version"], capture_output=True, text=True, check=False).stdout
    redis_version = version.split(" v=")[-1].split()[0] if " v=" in version else "?"
    return (f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}, redis {redis_version}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small runs, simulated time for the worker kill")
    parser.add_argument("--fsync-always", action="store_true",
                        help="also run the load with appendfsync always, to measure what it costs")
    parser.add_argument("--only", action="append", help="run only these scenarios (by name)")
    args = parser.parse_args(argv)
    rows = []
    started = time.monotonic()
    for name, run in scenarios(args.quick, args.fsync_always):
        if args.only and name not in args.only:
            continue
        print(f"reliability: {name} ...", file=sys.stderr, flush=True)
        try:
            row = run()
        except Exception as exc:  # a scenario that cannot finish is a FAIL in the table, not a traceback
            row = Row(name, "(did not finish)", problems=[f"{type(exc).__name__}: {exc}"[:500]])
        row.ok = not row.problems
        rows.append(row)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\nrunnerguard reliability, {'quick' if args.quick else 'full'} run, {when}, {machine()}, "
          f"{time.monotonic() - started:.0f} s\n")
    print_table(rows)
    print(json.dumps({"date": when, "machine": machine(), "quick": args.quick, "rows": [
        {"scenario": r.scenario, "ok": r.ok, "lost": r.lost, "figures": r.figures, "data": r.data,
         "problems": r.problems} for r in rows]}, default=str))
    return 0 if rows and all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
