"""Three hosts on Redis Sentinel (issue #18): web + worker + scheduler on each, a primary SIGKILLed, a host cut off.

Each host is a network namespace with its own address (devtools/netns.py); the hosts run a Redis data node and a
Sentinel each (the first node starts as the primary), gunicorn, a worker and a scheduler, all with
RUNNERGUARD_REDIS_MIN_REPLICAS=1. The load generator and the checks run in a fourth namespace and send through all
three webs, as a load balancer would (a web that stops answering is taken out of rotation).

`python -m devtools.reliability_hosts` runs the scenario alone; `make reliability` runs it with the others.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from config import load_settings
from devtools import netns
from devtools import reliability_tasks as test_tasks
from devtools.redis_sentinel import MASTER, SentinelSet, start_sentinel_set
from devtools.reliability_checks import (
    Row,
    completed_jobs,
    jobs_counted,
    latency_figures,
    missing,
    not_exactly_once,
    timeline_mismatches,
)
from devtools.reliability_load import (
    Answer,
    Delivery,
    encode,
    feed_open_loop,
    job_payloads,
    lifecycles,
    read_answers,
    write_plan,
)
from devtools.reliability_load import send as load_send
from devtools.reliability_stack import ROOT, wait_for
from runnerguard.queue import tasks as rq_tasks
from runnerguard.queue.tasks import TIMINGS
from runnerguard.store import connection, deliveries
from runnerguard.store.deliveries import Delivery as Recorded

HOSTS = ("h1", "h2", "h3")
WEB_PORT, REDIS_PORT, SENTINEL_PORT = 8000, 6379, 26379
QUEUES = ("events", "github")
FAILOVER_TARGET = 30.0
RETRY_TARGET = 180.0  # the cut-off host's task done elsewhere: heartbeat TTL (75 s) + cleanup pass + retry delay
SENDER_THREADS = 48
DRAIN_TIMEOUT = 420.0
LOST_TASK_GRACE = 30
BIN = Path(sys.executable).parent


@dataclass
class Host:
    name: str
    address: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    cut: bool = False


# --- the load generator (runs in the client namespace) ---------------------------------------------------------------

def send(target: tuple[str, int], secret: str, guid: str, body: bytes) -> tuple[int, str]:
    return load_send(target, secret, guid, body, connect_timeout=1)  # a dead host is noticed in a second, not ten


def run_paced(targets: list[tuple[str, int]], secret: str, plan: list[tuple[str, bytes]], rate: float) -> list[Answer]:
    """Open loop over several webs, round robin; a web that fails to answer is out of rotation from then on (the
    load balancer's health check), and the delivery it failed counts as not acknowledged (GitHub redelivers)."""
    lock = threading.Lock()
    alive = list(targets)
    turn = [0]

    def pick() -> tuple[str, int] | None:
        with lock:
            if not alive:
                return None
            turn[0] += 1
            return alive[turn[0] % len(alive)]

    def deliver(guid: str, body: bytes) -> tuple[int, str]:
        target = pick()
        status, error = send(target, secret, guid, body) if target else (0, "no web left")
        if status == 0 and target is not None:
            with lock:
                if target in alive and len(alive) > 1:
                    alive.remove(target)
        return status, f"{target[0] if target else '-'} {error}".strip()

    return feed_open_loop(plan, rate, deliver, threads=SENDER_THREADS)


def load_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", required=True, help="host:port,host:port")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    targets = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in args.targets.split(",")]
    secret = os.environ["RELIABILITY_WEBHOOK_SECRET"]
    plan = [(row["guid"], row["body"].encode()) for row in map(json.loads, args.plan.read_text().splitlines())]
    print("sending", flush=True)  # the plan is read (seconds, for 100 MB): the scenario's clock starts now
    answers = run_paced(targets, secret, plan, args.rate)
    with args.out.open("w") as fh:
        for a in answers:
            fh.write(json.dumps(a.__dict__) + "\n")
    return 0


# --- the scenario ----------------------------------------------------------------------------------------------------

class Scenario:
    def __init__(self, *, rate: float, seconds: float, kill_at: float, cut_at: float) -> None:
        self.rate, self.seconds, self.kill_at, self.cut_at = rate, seconds, kill_at, cut_at
        self.net = netns.Network(list(HOSTS))
        self.hosts = [Host(h, self.net.address(h)) for h in HOSTS]
        self.tmp = Path(tempfile.mkdtemp(prefix="runnerguard-hosts-"))
        self.secret = secrets.token_hex(16)
        self.password = secrets.token_urlsafe(24)
        self.sentinel_password = secrets.token_urlsafe(24)
        self.group: SentinelSet | None = None
        self.others: list[subprocess.Popen[bytes]] = []

    def env(self, host: Host) -> dict[str, str]:
        sentinels = ",".join(f"{h.address}:{SENTINEL_PORT}" for h in self.hosts)
        return {**{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNERGUARD_", "REDIS_"))},
                "GITHUB_WEBHOOK_SECRET": self.secret, "REDIS_SENTINELS": sentinels, "REDIS_SENTINEL_MASTER": MASTER,
                "REDIS_PASSWORD": self.password, "REDIS_SENTINEL_PASSWORD": self.sentinel_password,
                "RUNNERGUARD_REDIS_MIN_REPLICAS": "1", "RUNNERGUARD_HOST": host.name,
                # A task the failover orphaned (popped, never registered) is queued again 30-45 s after its
                # delivery, within the drain limit, instead of after the production grace of 10 minutes.
                "RUNNERGUARD_LOST_TASK_GRACE_SECONDS": str(LOST_TASK_GRACE),
                "RUNNERGUARD_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}

    def settings(self) -> object:
        return load_settings(self.env(self.hosts[0]))

    def spawn(self, host: Host, role: str, argv: list[str]) -> None:
        log = (self.tmp / f"{host.name}-{role}.log").open("ab")
        host.processes[role] = subprocess.Popen([*self.net.prefix(host.name), *argv], cwd=ROOT, env=self.env(host),
                                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start(self) -> None:
        self.net.create()
        prefixes = [self.net.prefix(h.name) for h in self.hosts]
        addresses = [h.address for h in self.hosts]
        self.group = start_sentinel_set(
            password=self.password, sentinel_password=self.sentinel_password, data_hosts=addresses,
            sentinel_hosts=addresses, prefixes=prefixes, sentinel_prefixes=prefixes,
            ports=[REDIS_PORT] * 3 + [SENTINEL_PORT] * 3, down_after_ms=3000, failover_timeout_ms=10000, wait=False)
        with self.net.inside("client"):
            self.group.wait_ready(replicas=2, timeout=60)
        for host in self.hosts:
            self.spawn(host, "web", [str(BIN / "gunicorn"), "app:create_app()", "--config",
                                     str(ROOT / "deploy/gunicorn.conf.py"), "--bind", f"{host.address}:{WEB_PORT}",
                                     "--workers", "1", "--access-logfile", "/dev/null", "--error-logfile", "-",
                                     "--log-level", "warning"])
            self.spawn(host, "worker", [sys.executable, *test_tasks.TEST_WORKER, test_tasks.QUEUE, *QUEUES])
            self.spawn(host, "scheduler", [sys.executable, "worker.py", "--scheduler"])
        with self.net.inside("client"):
            for host in self.hosts:
                wait_for(lambda h=host: self._web_up(h), timeout=60, what=f"{host.name}'s web answering")

    def _web_up(self, host: Host) -> bool:
        conn = http.client.HTTPConnection(host.address, WEB_PORT, timeout=2)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    def stop(self) -> None:
        for host in self.hosts:
            for process in host.processes.values():
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=10)
        for process in self.others:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        if self.group is not None:
            self.group.stop()
        self.net.destroy()
        if not os.environ.get("RELIABILITY_KEEP"):  # the logs, for a post-mortem
            shutil.rmtree(self.tmp, ignore_errors=True)

    def client(self) -> redis.Redis:
        return connection.connect(self.settings(), socket_timeout=5)  # type: ignore[arg-type]

    def host_of_worker(self, worker_name: str, client: redis.Redis) -> Host | None:
        for worker in Worker.all(connection=client):
            if worker.name == worker_name:
                for host in self.hosts:
                    if host.processes["worker"].pid == worker.pid:
                        return host
        return None

    def host_of_primary(self) -> Host | None:
        assert self.group is not None
        address = self.group.primary_address()
        return next((h for h in self.hosts if address and h.address == address[0]), None)

    def run(self) -> Row:
        row = Row("3 hosts, Sentinel",
                  f"3 network-namespace hosts (web + worker + scheduler each), Redis primary + 2 replicas + 3 "
                  f"Sentinels, MIN_REPLICAS=1, {self.rate:g}/s for {self.seconds:g} s through all webs; primary "
                  f"SIGKILLed at {self.kill_at:g} s, a host cut off at {self.cut_at:g} s: failover < "
                  f"{FAILOVER_TARGET:g} s, only 503 meanwhile, 0 acked lost, 0 jobs counted twice, the cut host's "
                  "task retried elsewhere")
        why = netns.available()
        if why:
            row.problems.append(f"not run: {why}")
            return row
        try:
            self.start()
            with self.net.inside("client"):
                self._drive(row)
        finally:
            self.stop()
        return row

    def _drive(self, row: Row) -> None:
        assert self.group is not None
        tag = f"hosts{time.time_ns()}"
        plan = lifecycles(int(self.rate * self.seconds), tag=tag)
        slow_job = 10**6
        # A success: its timings task counts it (jobs_total) in the timeline write itself, so the retry after the
        # cut is what could count it twice. A failure is counted by its cause task, which this direct enqueue does
        # not queue: jobs_total then missed it and the run failed on a count no product path would miss.
        lifecycle = job_payloads(slow_job, "success", created=time.time() - 900)
        plan += [Delivery(f"{tag}-slow-{i}", slow_job, p["action"], encode(p)) for i, p in enumerate(lifecycle[:2])]
        slow = Delivery(f"{tag}-slow-2", slow_job, "completed", encode(lifecycle[2]))
        plan_path, out = self.tmp / "plan.jsonl", self.tmp / "answers.jsonl"
        write_plan(plan_path, plan)
        targets = ",".join(f"{h.address}:{WEB_PORT}" for h in self.hosts)
        load = subprocess.Popen([sys.executable, "-m", "devtools.reliability_hosts", "load", "--targets", targets,
                                 "--rate", str(self.rate), "--plan", str(plan_path), "--out", str(out)], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT), "RELIABILITY_WEBHOOK_SECRET": self.secret},
                                stdout=subprocess.PIPE)
        self.others.append(load)
        assert load.stdout is not None
        load.stdout.readline()  # "sending": kill_at and cut_at count from the first delivery, not from the spawn
        began = time.monotonic()
        client = self.client()

        # 1. the primary, SIGKILLed mid-load
        time.sleep(max(0.0, self.kill_at - (time.monotonic() - began)))
        old = self.group.primary_address()
        assert old is not None
        old_node = self.group.node_at(old)
        old_node.kill()
        killed = time.time()
        failover = wait_for(lambda: self.group.primary_address() not in (None, old),  # type: ignore[union-attr]
                            timeout=60, every=0.1, what="a new primary")
        new = self.group.primary_address()
        old_node.start()  # it comes back, and the Sentinels make it a replica of the new primary

        # 2. a task in flight on one host, then that host cut off (its web, worker and Redis die with it)
        time.sleep(max(0.0, self.cut_at - 3 - (time.monotonic() - began)))
        pipe = client.pipeline(transaction=True)
        deliveries.record(pipe, Recorded(guid=slow.guid, event="workflow_job", body=slow.body, received_at=time.time(),
                                         action="completed", repo="octo/fleet", tasks=("timings",)))
        pipe.execute()
        job = rq_tasks.queue(test_tasks.QUEUE, client).enqueue(
            "devtools.reliability_tasks.record_then_linger", slow.guid, 3600.0, job_id=f"{slow.guid}_slow",
            # result_ttl as the real tasks have it: with 0, RQ deletes the job on success and trips over the
            # cut-off host's expired execution (ValueError in remove_executions), failing a run that succeeded.
            retry=TIMINGS.rq_retry(), job_timeout=TIMINGS.timeout, result_ttl=TIMINGS.result_ttl)
        wait_for(lambda: client.hexists(test_tasks.LINGERING, slow.guid), timeout=30, what="the task lingering")
        job.refresh()
        victim = self.host_of_worker(job.worker_name or "", client)
        assert victim is not None, f"no host runs worker {job.worker_name}"
        primary_host = self.host_of_primary()
        time.sleep(max(0.0, self.cut_at - (time.monotonic() - began)))
        self.net.cut(victim.name)
        cut = time.time()
        killed_processes = self.net.kill_all(victim.name)
        victim.cut = True
        if victim is primary_host:
            wait_for(lambda: self.host_of_primary() not in (None, victim), timeout=60, every=0.2,
                     what="a new primary after the cut")

        # 3. the load ends; what was acknowledged must be there, before anything is redelivered
        load.wait(timeout=self.seconds + 120)
        answers = read_answers(out)
        client = self.client()
        acked = [a.guid for a in answers if a.status == 202]
        lost = missing(client, acked)
        statuses = Counter(a.status for a in answers)
        during = [a for a in answers if killed <= a.due <= killed + failover + 2]
        # GitHub redelivers what was not acknowledged; do the same through a surviving web.
        alive = [(h.address, WEB_PORT) for h in self.hosts if not h.cut]
        answered = {a.guid for a in answers if a.status in (200, 202)}
        refused = [d for d in plan if d.guid not in answered]
        redelivered: Counter[int] = Counter()
        for i, d in enumerate(refused):
            for _attempt in range(5):
                status, _ = send(alive[i % len(alive)], self.secret, d.guid, d.body)
                if status in (200, 202):
                    break
                time.sleep(1)
            redelivered[status] += 1
        guids = [d.guid for d in plan]
        wait_for(lambda: client.hexists(test_tasks.FINISHED, slow.guid), timeout=RETRY_TARGET + 120, every=1,
                 what="the cut-off host's task retried elsewhere")
        retried = float(client.hget(test_tasks.FINISHED, slow.guid).split(b":")[0]) - cut  # type: ignore[union-attr]
        try:
            # Tasks cut off by the failover or the cut come back once their execution expires (75 s), then after
            # their retry delay; a queue drained on the old primary but not on the new one is served again.
            drained = wait_for(lambda: not self._pending(client, [*guids, slow.guid]) and self._idle(client),
                               timeout=DRAIN_TIMEOUT, every=1, what="every delivery processed")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}: {self._describe(client, [*guids, slow.guid])}") from None
        requeued = sum(log.read_text(errors="replace").count("re-queued lost tasks")
                       for log in self.tmp.glob("*-worker.log"))
        twice = not_exactly_once(client, guids)
        wrong = timeline_mismatches(client, [*plan, slow])
        counted, finished = jobs_counted(client), completed_jobs([*plan, slow])
        runs = int(client.hget(test_tasks.RUNS, slow.guid) or 0)  # type: ignore[arg-type]
        lat = latency_figures(answers)
        bad = {s: n for s, n in statuses.items() if s not in (200, 202, 503, 0)}
        cut_errors = sum(1 for a in answers if a.status == 0 and not a.error.startswith(victim.address))
        row.need(failover < FAILOVER_TARGET, f"failover took {failover:.1f} s")
        row.need(not bad, f"answers other than 202/200/503: {bad}")
        row.need(all(a.status in (202, 200, 503) for a in during), "non-503 errors during the failover: "
                 f"{Counter(a.status for a in during)}")
        row.need(cut_errors == 0, f"{cut_errors} unanswered requests to hosts that were not cut off")
        row.need(not lost, f"{len(lost)} acknowledged deliveries lost: {lost[:5]}")
        row.need(counted == finished, f"jobs_total {counted} != {finished} finished jobs (counted twice or lost)")
        row.need(not wrong, f"timeline: {wrong[:3]}")
        row.need(runs == 2 and retried < RETRY_TARGET,
                 f"the cut host's task ran {runs} times, done {retried:.0f} s after the cut")
        row.lost = len(lost)
        n503 = statuses.get(503, 0)
        was_primary = " (the primary)" if victim is primary_host else ""
        row.figures = (f"{len(answers)} sent, {statuses.get(202, 0)}x202 {n503}x503 {statuses.get(0, 0)} unanswered "
                       f"(the cut host) {sum(bad.values())} other; failover {failover:.1f} s ({old[0]} -> "
                       f"{new[0] if new else '?'}); cut {victim.name}{was_primary}, {killed_processes} processes "
                       f"killed, its task done elsewhere {retried:.0f} s later; "
                       f"{len(refused)} redelivered {dict(redelivered)}; ack p50 {lat['p50_ms']} ms p99 "
                       f"{lat['p99_ms']} ms; drained {drained:.0f} s; {finished} jobs counted once; "
                       f"{len(twice)} deliveries with a task done twice; {requeued} deliveries' lost tasks "
                       "re-queued")
        row.data = {"failover_s": round(failover, 2), "statuses": dict(statuses), "lost": len(lost),
                    "retried_s": round(retried, 1), "twice": len(twice), "requeued_lost": requeued,
                    "victim": victim.name,
                    "victim_was_primary": victim is primary_host, **lat}

    @staticmethod
    def _pending(client: redis.Redis, guids: list[str]) -> list[str]:
        pipe = client.pipeline(transaction=False)
        for guid in guids:
            pipe.hgetall(f"rg:delivery:{guid}")
        out = []
        for guid, raw in zip(guids, pipe.execute(), strict=True):
            listed = raw.get(b"tasks")
            states = deliveries.task_states(raw)  # a done task is its mark, with no `task:<name>` field
            if listed is None or any(states.get(t) != deliveries.DONE for t in json.loads(listed)):
                out.append(guid)
        return out

    def _describe(self, client: redis.Redis, guids: list[str]) -> str:
        pending = self._pending(client, guids)
        parts = [f"{len(pending)} pending, e.g. {pending[:3]}"]
        for q in (*QUEUES, test_tasks.QUEUE):
            parts.append(f"{q}: queued {Queue(q, connection=client).count}, started "
                         f"{StartedJobRegistry(q, connection=client).count}, scheduled "
                         f"{ScheduledJobRegistry(q, connection=client).count}, failed "
                         f"{FailedJobRegistry(q, connection=client).count}")
        for guid in pending[:3]:
            raw = client.hgetall(f"rg:delivery:{guid}")
            parts.append(f"{guid}: {'recorded' if raw else 'NOT RECORDED'} "
                         f"{ {t: state[:60] for t, state in deliveries.task_states(raw).items()} }")
        return "; ".join(parts)

    @staticmethod
    def _idle(client: redis.Redis) -> bool:
        return all(Queue(q, connection=client).count == 0 and StartedJobRegistry(q, connection=client).count == 0
                   and ScheduledJobRegistry(q, connection=client).count == 0 for q in (*QUEUES, test_tasks.QUEUE))


def sentinel_hosts(*, rate: float = 200.0, seconds: float = 60.0, kill_at: float = 15.0, cut_at: float = 40.0) -> Row:
    return Scenario(rate=rate, seconds=seconds, kill_at=kill_at, cut_at=cut_at).run()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["load"]:
        return load_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args(argv)
    row = sentinel_hosts(rate=args.rate, seconds=args.seconds, kill_at=args.seconds / 4,
                         cut_at=args.seconds * 2 / 3)
    row.ok = not row.problems
    print(json.dumps({"scenario": row.scenario, "ok": row.ok, "figures": row.figures, "problems": row.problems,
                      "data": row.data}, indent=1, default=str))
    return 0 if row.ok else 1


if __name__ == "__main__":
    sys.exit(main())
