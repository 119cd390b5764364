"""One warm-up per cache at a time in this agent, shared by the work loop and the jobs asking on loopback."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from runnerguard.prewarm import stamp
from runnerguard.prewarm.specs import CacheSpec
from runnerguard.prewarm.warm import PrewarmResult

Warm = Callable[[CacheSpec], PrewarmResult]
State = Literal["ready", "warming", "missing", "failed"]
Signature = tuple[int, int, int]


def _sig(path: str) -> Signature:
    st = os.lstat(path)
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


@dataclass(frozen=True)
class _Hot:
    """A stamp already read and found a hit: while its file is unchanged only the artifact's files need a stat."""

    key: tuple[object, ...]  # the spec's identity and the stamp file's inode, size, mtime and ctime
    stamp_file: str
    files: tuple[tuple[str, Signature], ...]


@dataclass
class _Flight:
    """A warm-up under way; everyone who wants the artifact meanwhile waits on `finished` instead of downloading."""

    spec: CacheSpec
    finished: threading.Event = field(default_factory=threading.Event)
    result: PrewarmResult | None = None


@dataclass(frozen=True)
class Answer:
    """What a job gets: the artifact ready (at once or after waiting), or the state it was in when time ran out."""

    spec: CacheSpec
    state: State
    waited_s: float
    at_once: bool
    error: str | None = None


class CacheBroker:
    """Starts at most one warm per cache name; the flock inside `warm` also keeps other processes out."""

    def __init__(self, warm: Warm, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._warm = warm
        self._clock = clock
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._failed: dict[str, str] = {}
        self._answers: dict[str, dict[str, int]] = {}
        self._hot: dict[str, _Hot] = {}

    def ready(self, spec: CacheSpec) -> bool:
        """stamp.check(spec) == "hit", without re-reading the stamp while its file has not changed.

        The job's hit answer is on this path: parsing a stamp of a few hundred files costs milliseconds, a stat each
        costs microseconds. ctime cannot be set back, so an unchanged stamp file holds the stamp read before.
        """
        identity = (spec.sha256, spec.url, spec.unpack, str(spec.dest))
        hot = self._hot.get(spec.name)
        if hot is not None:
            try:
                st = os.lstat(hot.stamp_file)
                if hot.key == (*identity, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) and all(
                        _sig(path) == expected for path, expected in hot.files):
                    return True
            except OSError:
                pass
            self._hot.pop(spec.name, None)
        stamp_file = str(stamp.stamp_path(spec.dest))
        try:
            before = os.lstat(stamp_file)
        except OSError:
            return False
        verdict, found = stamp.check(spec)
        if verdict != "hit" or found is None:
            return False
        try:
            after = os.lstat(stamp_file)
        except OSError:
            return True
        if (before.st_ino, before.st_mtime_ns, before.st_ctime_ns) == (after.st_ino, after.st_mtime_ns,
                                                                        after.st_ctime_ns):
            files = tuple((str(spec.dest / rel), sig) for rel, sig in found.signature().items())
            self._hot[spec.name] = _Hot((*identity, after.st_ino, after.st_size, after.st_mtime_ns,
                                         after.st_ctime_ns), stamp_file, files)
        return True

    def _flight(self, spec: CacheSpec) -> tuple[_Flight, bool]:
        """The warm in flight for `spec`, or a new one started on its own thread; True when this call started it."""
        with self._lock:
            flight = self._flights.get(spec.name)
            if flight is not None:
                return flight, False
            flight = _Flight(spec)
            self._flights[spec.name] = flight
        threading.Thread(target=self._fly, args=(flight,), name=f"warm-{spec.name}", daemon=True).start()
        return flight, True

    def _fly(self, flight: _Flight) -> None:
        try:
            result = self._warm(flight.spec)
        except Exception as exc:  # a bug in a warm must not leave waiters hanging until their timeout
            result = PrewarmResult(flight.spec.name, "", "error", 0, 0.0, f"{exc.__class__.__name__}: {exc}")
        flight.result = result
        with self._lock:
            self._flights.pop(flight.spec.name, None)
            if result.result == "error":
                self._failed[flight.spec.name] = result.error or "warm failed"
            else:
                self._failed.pop(flight.spec.name, None)
        flight.finished.set()

    def warm(self, spec: CacheSpec) -> tuple[PrewarmResult, bool]:
        """For a work item: run (or join) the warm and wait for it. True when it joined one already in flight."""
        flight, started = self._flight(spec)
        flight.finished.wait()
        assert flight.result is not None
        return flight.result, not started

    def state(self, spec: CacheSpec) -> State:
        with self._lock:
            if spec.name in self._flights:
                return "warming"
            failed = spec.name in self._failed
        if self.ready(spec):
            return "ready"
        return "failed" if failed else "missing"

    def ask(self, spec: CacheSpec, wait: float) -> Answer:
        """A job's question: ready at once (stat only), or after the warm in flight / one started for it."""
        started = self._clock()
        with self._lock:
            in_flight = spec.name in self._flights
        if not in_flight and self.ready(spec):
            self._count(spec.name, "hit")
            return Answer(spec, "ready", 0.0, at_once=True)
        flight, _ = self._flight(spec)
        if not flight.finished.wait(wait):
            return Answer(spec, "warming", self._clock() - started, at_once=False)
        result = flight.result
        if result is not None and result.result == "error":
            return Answer(spec, "failed", self._clock() - started, at_once=False, error=result.error)
        if not self.ready(spec):
            # the warm was skipped or the tree changed right after: say what it is, the job decides
            return Answer(spec, self.state(spec), self._clock() - started, at_once=False)
        self._count(spec.name, "waited")
        return Answer(spec, "ready", self._clock() - started, at_once=False)

    def _count(self, name: str, kind: str) -> None:
        with self._lock:
            counts = self._answers.setdefault(name, {"hit": 0, "waited": 0})
            counts[kind] += 1

    def take_answers(self) -> dict[str, dict[str, int]]:
        """The job-side counts since the last call (the report sends them; `restore` puts them back on failure)."""
        with self._lock:
            answers, self._answers = self._answers, {}
        return answers

    def restore(self, answers: dict[str, dict[str, int]]) -> None:
        with self._lock:
            for name, counts in answers.items():
                mine = self._answers.setdefault(name, {"hit": 0, "waited": 0})
                for kind, n in counts.items():
                    mine[kind] = mine.get(kind, 0) + n
