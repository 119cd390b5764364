"""The agent process: fetch its config, long-poll for work and run it, report health every 30 s, serve the jobs."""

from __future__ import annotations

import json
import logging
import random
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from config.policy import Policy
from config.settings import AgentSettings
from runnerguard.agent import AGENT_VERSION, health, hostconfig, hygiene
from runnerguard.agent.broker import CacheBroker
from runnerguard.agent.cache_server import CacheServer
from runnerguard.agent.hostconfig import HostPolicy
from runnerguard.agent.protocol import AgentClient, Refused, Unreachable, WorkItem
from runnerguard.agent.runner_log import read_state
from runnerguard.prewarm.commands import run_command
from runnerguard.prewarm.specs import CacheSpec, SpecError
from runnerguard.prewarm.warm import PrewarmResult, warm_cache

log = logging.getLogger("runnerguard.agent")

POLL_WAIT = 25
CONFIG_EVERY = 300.0
BACKOFF_START = 1.0
BACKOFF_CAP = 300.0
WARM_LOCK_WAIT = 6 * 3600.0  # the flock only meets another process's warm of the same cache: wait it out
NOT_IN_POLICY = "not in this host's policy"
MAX_PENDING_DONE = 500
MAX_ERROR = 500  # the web tier's limit for an error text
MAX_DISK_PATHS = 32
ITEM_WORKERS = 4  # a 1.8 GB download must not hold up a quick command queued behind it
BUSY_POLL = 2  # while items run: poll briefly, so their acks and new items do not wait behind a 25 s poll
REPORT_LIMIT = 60 << 10  # the web tier refuses bodies over 64 KiB
_CACHE_STATES = {"hit": "hit", "miss": "installed", "skipped": "skipped", "error": "error"}
_COMMAND_STATES = {"ok": "ran", "skipped": "skipped"}


class Backoff:
    """1 s, 2 s, 4 s ... up to 5 min, with jitter so a fleet of hosts does not return in step after an outage."""

    def __init__(self, start: float | None = None, cap: float | None = None) -> None:
        self.start = BACKOFF_START if start is None else start
        self.cap = BACKOFF_CAP if cap is None else cap
        self._next = self.start

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay * random.uniform(0.8, 1.0)

    def reset(self) -> None:
        self._next = self.start


def _why_refused(exc: Refused, settings: AgentSettings) -> str:
    if exc.status == 403:
        return (f"the web tier refused host {settings.host!r} for this token (403): the token belongs to another "
                "host; check RUNNERGUARD_HOST and RUNNERGUARD_HOST_TOKEN")
    return ("the web tier refused this host's token (401): it is wrong or revoked; set RUNNERGUARD_HOST_TOKEN to the "
            f"token `flask --app app hosts add {settings.host}` printed")


class Agent:
    """Threads: the work loop, the report loop and the cache server; `stop` ends all three."""

    def __init__(self, settings: AgentSettings, *, local_policy: Policy | None = None,
                 session: requests.Session | None = None, clock: Callable[[], float] = time.time,
                 disk_usage: health.DiskUsage = shutil.disk_usage, systemctl: str = "systemctl") -> None:
        self.settings = settings
        self.clock = clock
        self.disk_usage = disk_usage
        self.systemctl = systemctl
        self.client = AgentClient(settings.url, settings.host, settings.token, session=session)
        self.local = hostconfig.from_local(local_policy, settings.host) if local_policy is not None else None
        self.policy: HostPolicy = hostconfig.effective(self.local, None)
        self.configured = False
        self._configured = threading.Event()
        self.broker = CacheBroker(self._warm)
        self.cache_server = CacheServer(settings.listen_host, settings.listen_port, broker=self.broker,
                                        caches=lambda: self.policy.caches)
        self.stop = threading.Event()
        self._pending_done: list[tuple[str, dict[str, Any]]] = []
        self._inflight: set[str] = set()
        self._done_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._items = ThreadPoolExecutor(max_workers=ITEM_WORKERS, thread_name_prefix="agent-item")
        self._cleanups: list[dict[str, Any]] = []
        self._last_dry_run: tuple[str, ...] = ()
        self._config_at = -CONFIG_EVERY
        self._started = time.monotonic()
        self._threads: list[threading.Thread] = []

    # -- work -------------------------------------------------------------------------------------------------

    def _warm(self, spec: CacheSpec) -> PrewarmResult:
        host = self.policy.host
        return warm_cache(spec, host=self.settings.host, lock_wait=WARM_LOCK_WAIT, disk_usage=self.disk_usage,
                          max_fill=host.cleanup_at if host is not None else 0.8)

    def run_item(self, item: WorkItem) -> dict[str, Any]:
        """The `done` body for one item; anything the policy lacks is refused by name, never looked up elsewhere."""
        started = time.monotonic()
        if item.kind == "cache":
            spec = self.policy.caches.get(item.name)
            if spec is None:
                return {"state": "error", "bytes": 0, "seconds": 0.0, "error": NOT_IN_POLICY}
            result, joined = self.broker.warm(spec)
            state = _CACHE_STATES[result.result]
            if joined and state == "installed":
                state = "hit"  # another item's download installed it: this one downloaded nothing
            return {"state": state, "bytes": 0 if joined else result.bytes,
                    "seconds": round(time.monotonic() - started, 3), "error": text(result.error, MAX_ERROR)}
        command = self.policy.commands.get(item.name)
        if command is None:
            return {"state": "error", "bytes": 0, "seconds": 0.0, "error": NOT_IN_POLICY}
        outcome = run_command(command, host=self.settings.host, lock_dir=self.settings.state_dir / "locks")
        return {"state": _COMMAND_STATES.get(outcome.result, "error"), "bytes": 0,
                "seconds": round(outcome.seconds, 3), "error": text(outcome.error, MAX_ERROR)}

    def refresh_config(self, *, force: bool = False) -> None:
        if not force and self.configured and time.monotonic() - self._config_at < CONFIG_EVERY:
            return
        answer = self.client.config()
        try:
            server = hostconfig.from_server(answer, self.settings.host)
        except SpecError as exc:
            raise Unreachable(f"/agent/v1/config is not usable: {exc}") from None
        self.policy = hostconfig.effective(self.local, server)
        if not self.configured:
            log.info("agent: configured from %s policy: %d caches, %d commands, host table %s",
                     self.policy.source, len(self.policy.caches), len(self.policy.commands),
                     "present" if self.policy.host else "absent")
        self.configured = True
        self._configured.set()
        self._config_at = time.monotonic()

    def _flush_done(self) -> None:
        """Post the acknowledgements not yet accepted, oldest first; raises (and keeps them) on an outage."""
        with self._flush_lock:
            while True:
                with self._done_lock:
                    if not self._pending_done:
                        return
                    item_id, body = self._pending_done[0]
                self.client.done(item_id, body)  # False (404): the lease ran out and the item went; nothing to keep
                with self._done_lock:
                    self._pending_done.pop(0)

    def _run_item(self, item: WorkItem) -> None:
        try:
            body = self.run_item(item)
        except Exception as exc:  # a bug must still be acknowledged, or the item comes back forever
            body = {"state": "error", "bytes": 0, "seconds": 0.0, "error": f"agent error: {exc.__class__.__name__}"}
        log.info("agent: %s %s for job %s: %s", item.kind, item.name, item.job_id, body["state"],
                 extra={"job_id": item.job_id, "status": body["state"], "error": body["error"]})
        with self._done_lock:
            if len(self._pending_done) < MAX_PENDING_DONE:
                self._pending_done.append((item.id, body))
            self._inflight.discard(item.id)
        try:
            self._flush_done()
        except (Refused, Unreachable):
            pass  # the work loop posts it on its next round

    def busy(self) -> bool:
        with self._done_lock:
            return bool(self._inflight or self._pending_done)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Until every item taken has run and been acknowledged (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self.busy():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def work_once(self, wait: int = POLL_WAIT) -> int:
        """One round: config (when due), pending acks, one long poll; its items start on the item threads."""
        self.refresh_config()
        self._flush_done()
        items = self.client.work(min(wait, BUSY_POLL) if self.busy() else wait)
        if not items and self.client.retry_after:
            self.stop.wait(self.client.retry_after)
        for item in items:
            with self._done_lock:
                if item.id in self._inflight:
                    continue  # offered again while it still runs (a lease shorter than the download)
                self._inflight.add(item.id)
            self._items.submit(self._run_item, item)
        return len(items)

    def _retrying(self, what: Callable[[], object], backoff: Backoff, *, quiet: bool = False) -> bool:
        """Run `what`; on a refusal or an outage say so in one line and sleep. False when asked to stop."""
        if not self.settings.token:
            delay = backoff.next()
            if not quiet:
                log.warning("agent: no RUNNERGUARD_HOST_TOKEN set: `flask --app app hosts add %s` on the web tier "
                            "prints one; put it in agent.env. Retrying in %.0fs", self.settings.host, delay)
            return not self.stop.wait(delay)
        try:
            what()
        except Refused as exc:
            delay = backoff.next()
            if not quiet:
                log.warning("agent: %s. Retrying in %.0fs", _why_refused(exc, self.settings), delay)
            return not self.stop.wait(delay)
        except (Unreachable, SpecError) as exc:
            delay = backoff.next()
            if not quiet:
                log.warning("agent: cannot reach the web tier at %s (%s). Retrying in %.0fs", self.settings.url,
                            exc, delay)
            return not self.stop.wait(delay)
        backoff.reset()
        return not self.stop.is_set()

    def work_loop(self) -> None:
        backoff = Backoff()
        while self._retrying(self.work_once, backoff):
            pass

    # -- health -----------------------------------------------------------------------------------------------

    def _busy(self) -> bool:
        host = self.policy.host
        return host is not None and read_state(host.runner_dir).state == "busy"

    def hygiene_once(self) -> hygiene.Cleanup | None:
        host = self.policy.host
        if host is None:
            return None
        done = hygiene.clean(host.runner_dir, cleanup_at=host.cleanup_at, keep_days=host.keep_days,
                             dry_run=host.dry_run, cache_roots=sorted({c.root for c in self.policy.caches.values()}),
                             declared=set(self.policy.caches), is_busy=self._busy, now=self.clock(),
                             disk_usage=self.disk_usage)
        if done is None:
            return None
        if done.dry_run and done.removed == self._last_dry_run:
            return None  # the same list every 30 s says nothing new
        self._last_dry_run = done.removed if done.dry_run else ()
        log.info("agent: cleanup %s %d bytes in %d paths%s", "would free" if done.dry_run else "freed",
                 done.freed_bytes, len(done.removed), f" ({len(done.errors)} errors)" if done.errors else "")
        self._cleanups = [*self._cleanups[-19:], done.as_report()]  # bounded while the web tier is away
        return done

    def build_report(self) -> dict[str, Any]:
        host = self.policy.host
        paths = ([host.work_dir] if host is not None else []) + sorted({c.root for c in self.policy.caches.values()})
        listener, service = health.runner(host, systemctl=self.systemctl)
        load = health.load()
        return {
            "agent_version": AGENT_VERSION,
            "uptime": health.uptime() or round(time.monotonic() - self._started, 1),
            "load": [*load, 0.0, 0.0, 0.0][:3],
            "memory": health.memory(),
            "disk": health.disk(paths[:MAX_DISK_PATHS], disk_usage=self.disk_usage),
            "runner": health.runner_json(listener, service),
            "cleanups": list(self._cleanups[-20:]),
            "cache_answers": {},
        }

    def report_once(self) -> None:
        self.hygiene_once()
        body = self.build_report()
        answers = self.broker.take_answers()
        body["cache_answers"] = answers
        fit(body, REPORT_LIMIT)
        try:
            self.client.report(body)
        except BaseException:
            self.broker.restore(answers)  # counts since the last report that got through
            raise
        self._cleanups.clear()

    def report_loop(self) -> None:
        # the first report waits (a little) for the config: before it the agent knows no runner directory
        self._configured.wait(self.policy.report_every)
        backoff = Backoff()
        # the work loop already says why the web tier refuses or cannot be reached: this loop stays quiet about it
        while self._retrying(self.report_once, backoff, quiet=True):
            if self.stop.wait(self.policy.report_every):
                return

    # -- process ----------------------------------------------------------------------------------------------

    def start(self) -> Agent:
        self.cache_server.start()
        log.info("agent: host %s, web tier %s, jobs ask at %s/caches/NAME", self.settings.host, self.settings.url,
                 self.cache_server.url)
        for target, name in ((self.work_loop, "agent-work"), (self.report_loop, "agent-report")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def shutdown(self, timeout: float = 1.0) -> None:
        self.stop.set()
        self._items.shutdown(wait=False, cancel_futures=True)
        self.cache_server.stop()
        for thread in self._threads:
            thread.join(timeout)  # a long poll in flight ends with its request; the process exits regardless
        self.client.close()


def text(value: str | None, limit: int) -> str | None:
    """A message for the web tier: printable characters only (a path may hold a newline), at most `limit`."""
    if value is None:
        return None
    return "".join(ch if ch.isprintable() else "?" for ch in value)[:limit]


def fit(body: dict[str, Any], limit: int) -> None:
    """Shorten the cleanups' path lists (then drop the oldest cleanups) until the JSON body fits in `limit` bytes."""
    cleanups: list[dict[str, Any]] = body["cleanups"]
    keep = max((len(c["removed"]) for c in cleanups), default=0)
    while cleanups and len(json.dumps(body)) > limit:
        if keep > 1:
            keep //= 2
            for cleanup in cleanups:
                del cleanup["removed"][keep:]
        else:
            cleanups.pop(0)


def run(settings: AgentSettings, *, local_policy: Policy | None, stop: threading.Event) -> int:
    """worker.py --prewarm: run until `stop` is set (SIGTERM, SIGINT)."""
    agent = Agent(settings, local_policy=local_policy).start()
    stop.wait()
    agent.shutdown()
    return 0
