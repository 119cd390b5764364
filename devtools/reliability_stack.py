"""The processes the reliability runs drive: redis-server (AOF), runnerguard under gunicorn, RQ workers."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from devtools.redis_server import RedisServer, free_port, start_redis
from runnerguard.queue.dispatch import job_id_for
from runnerguard.store import deliveries, keys

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def wait_for(check: Callable[[], bool], *, timeout: float, every: float = 0.1, what: str = "condition") -> float:
    """Poll `check` until it holds; returns the seconds it took. Raises TimeoutError naming `what`."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except (redis.RedisError, OSError):
            pass  # the thing polled may be down on purpose; keep polling until the deadline
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f}s")
        time.sleep(every)


def stop_process(process: subprocess.Popen[bytes], *, group: bool = True, timeout: float = 15) -> None:
    """SIGTERM (to its process group: RQ's scheduler is a child), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM) if group else process.terminate()
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL) if group else process.kill()
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass


@dataclass
class Stack:
    """One isolated runnerguard: its own Redis (AOF on), gunicorn with 2 workers, and RQ workers on demand."""

    fsync: str = "everysec"
    web_workers: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)
    secret: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="runnerguard-reliability-")))
    redis_port: int = field(default_factory=free_port)
    web_port: int = 0
    redis_server: RedisServer | None = None
    web: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    keep: bool = field(default_factory=lambda: bool(os.environ.get("RELIABILITY_KEEP")))  # logs, AOF: post-mortem
    _client: redis.Redis | None = None

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(self.redis_url, socket_timeout=10, socket_connect_timeout=2)
        return self._client

    def env(self) -> dict[str, str]:
        return {**os.environ, "GITHUB_WEBHOOK_SECRET": self.secret, "ADMIN_TOKEN": self.admin_token,
                "REDIS_URL": self.redis_url, "RUNNERGUARD_HOST": "reliability-host", "RUNNERGUARD_LOG_LEVEL": "WARNING",
                "PYTHONPATH": str(ROOT), **self.extra_env}

    # --- Redis ---------------------------------------------------------------------------------------------------

    def start_redis(self) -> None:
        self.redis_server = start_redis(port=self.redis_port, data_dir=self.tmp / "redis", appendonly=True,
                                        extra_args=["--appendfsync", self.fsync])

    def kill_redis(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no shutdown save, no goodbye to clients."""
        assert self.redis_server is not None
        self.redis_server.process.kill()
        self.redis_server.process.wait(timeout=10)

    def restart_redis(self) -> float:
        """Start it again on the same port and data dir; returns the seconds until it answered (AOF replay)."""
        start = time.monotonic()
        self.start_redis()
        return time.monotonic() - start

    # --- web -----------------------------------------------------------------------------------------------------

    def start_web(self) -> None:
        self.web_port = free_port()
        log = (self.tmp / "gunicorn.log").open("ab")
        # The deploy config as shipped, with the worker count pinned and the access log kept out of the terminal.
        self.web = subprocess.Popen(
            [str(BIN / "gunicorn"), "app:create_app()", "--config", str(ROOT / "deploy/gunicorn.conf.py"),
             "--bind", f"127.0.0.1:{self.web_port}", "--workers", str(self.web_workers),
             "--access-logfile", str(self.tmp / "access.log"), "--error-logfile", "-", "--log-level", "warning"],
            cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for(self._web_up, timeout=30, what="gunicorn answering /healthz")

    def _web_up(self) -> bool:
        if self.web is not None and self.web.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {self.web.returncode}; see {self.tmp / 'gunicorn.log'}")
        conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    # --- workers -------------------------------------------------------------------------------------------------

    def start_worker(self, *queues: str, argv: tuple[str, ...] = (), env: dict[str, str] | None = None,
                     ) -> subprocess.Popen[bytes]:
        """`python worker.py QUEUES`, in its own process group so a kill can take its scheduler child too.
        RELIABILITY_WORKER (a script path) runs another worker instead: to try a fix before it lands."""
        argv = argv or (os.environ.get("RELIABILITY_WORKER") or "worker.py",)
        n = len(self.workers)
        log = (self.tmp / f"worker-{n}.log").open("ab")
        process = subprocess.Popen([sys.executable, *argv, *queues], cwd=ROOT, env={**self.env(), **(env or {})},
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append(process)
        return process

    def kill_worker(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its scheduler child: a power cut or an OOM kill of the cgroup."""
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)

    def simulate_expiry(self, queues: tuple[str, ...]) -> float:
        """What real time would do, for the quick runs: dead workers' scheduler locks expire (a live scheduler takes
        its lock back at its next heartbeat) and every execution in the started registries expires, so RQ's cleanup
        retries the abandoned ones. Returns the epoch time at which that would really have happened (the latest
        expiry). Call it only when no task is legitimately running, or that one is retried too."""

        registries = [StartedJobRegistry(name, connection=self.client) for name in queues]
        latest = time.time()
        for registry in registries:
            self.client.delete(RQScheduler.get_locking_key(registry.name))
            entries: list[tuple[bytes, float]] = self.client.zrange(registry.key, 0, -1, withscores=True)  # type: ignore[assignment]
            latest = max([latest, *(float(score) for _, score in entries if score != float("inf"))])
        for registry in registries:
            registry.cleanup(timestamp=latest + 1)
        return latest

    def idle(self, queues: tuple[str, ...]) -> bool:
        """Nothing queued, running or waiting for a retry on `queues`."""

        return all(Queue(q, connection=self.client).count == 0
                   and StartedJobRegistry(q, connection=self.client).count == 0
                   and ScheduledJobRegistry(q, connection=self.client).count == 0 for q in queues)

    def worker_log(self, n: int) -> str:
        path = self.tmp / f"worker-{n}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- state ---------------------------------------------------------------------------------------------------

    def pending(self, guids: list[str]) -> list[str]:
        """Deliveries not yet done (a task queued, running or retrying)."""
        pipe = self.client.pipeline(transaction=False)
        for guid in guids:
            pipe.hgetall(keys.delivery(guid))
        out = []
        for guid, raw in zip(guids, pipe.execute(), strict=True):
            tasks = raw.get(b"tasks")
            if tasks is None:
                out.append(guid)
                continue
            states = deliveries.task_states(raw)  # a done task is its mark, with no `task:<name>` field
            if any(states.get(t) != deliveries.DONE for t in json.loads(tasks)):
                out.append(guid)
        return out

    def wait_done(self, guids: list[str], timeout: float, queues: tuple[str, ...] = ("events", "github")) -> float:
        """Until every delivery is done and nothing is left queued, running or scheduled for a retry."""
        try:
            return wait_for(lambda: not self.pending(guids) and self.idle(queues), timeout=timeout, every=0.25,
                            what=f"{len(guids)} deliveries processed")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc} ({self.describe(guids, queues)})") from None

    def describe(self, guids: list[str], queues: tuple[str, ...]) -> str:
        """Where the work stands, for a timeout's message."""

        parts = [f"{len(self.pending(guids))} pending"]
        for q in queues:
            counts = (Queue(q, connection=self.client).count, StartedJobRegistry(q, connection=self.client).count,
                      ScheduledJobRegistry(q, connection=self.client).count,
                      FailedJobRegistry(q, connection=self.client).count)
            parts.append(f"{q}: queued/started/scheduled/failed {'/'.join(map(str, counts))}")


        for guid in self.pending(guids)[:3]:
            delivery = deliveries.load(self.client, guid)
            tasks = delivery.tasks if delivery else ()
            states = {t: (delivery.task_states.get(t, "queued") if delivery else "?") for t in tasks}
            jobs = {}
            for t in tasks:
                job = Job.fetch(job_id_for(guid, t), connection=self.client, serializer=JSONSerializer) if Job.exists(
                    job_id_for(guid, t), connection=self.client) else None
                jobs[t] = job.get_status() if job else "no RQ job"
            parts.append(f"{guid}: {'recorded' if delivery else 'NOT RECORDED'}, tasks {states}, rq {jobs}")
        alive = sum(1 for w in self.workers if w.poll() is None)
        return "; ".join([*parts, f"{alive}/{len(self.workers)} workers alive", f"logs in {self.tmp}"])

    def stop(self) -> None:
        for process in self.workers:
            stop_process(process)
        if self.web is not None:
            stop_process(self.web)
        if self._client is not None:
            self._client.close()
        if self.redis_server is not None:
            self.redis_server.stop()
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Stack:
        try:
            self.start_redis()
            self.start_web()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
