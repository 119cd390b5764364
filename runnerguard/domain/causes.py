"""Why a failed job failed (runner, code, timeout, unknown), and whether it counts: pure, from recorded facts only.

The texts below are what GitHub writes into a job's check-run annotations and logs. Those written by the runner
are quoted from actions/runner's source (cited beside each); those written by GitHub's service (a lost runner, a job
never acquired, the 6 h limit) are not in that repository and are matched by their stable core phrase.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

RUNNER, CODE, TIMEOUT, UNKNOWN = "runner", "code", "timeout", "unknown"
CAUSES = (RUNNER, CODE, TIMEOUT, UNKNOWN)
DEFAULT_COUNTED = (RUNNER, TIMEOUT, UNKNOWN)
FAILING = frozenset({"failure", "timed_out", "cancelled"})

# The runner's own steps (src/Runner.Worker/JobExtension.cs: "Set up job" l.68, "Initialize containers" l.328,
# "Complete job" l.763; src/Runner.Worker/ContainerOperationProvider.cs: "Stop containers" l.59). Post steps are
# named "Post <action>" (src/Runner.Worker/ActionRunner.cs l.115): they clean up after the job, on the host.
RUNNER_STEPS = frozenset({"Set up job", "Initialize containers", "Stop containers", "Complete job"})
POST_PREFIX = "Post "


@dataclass(frozen=True)
class Pattern:
    kind: str  # the short name used in summaries ("lost communication", "disk"...)
    cause: str
    regex: re.Pattern[str]


# Order matters: the first match is the evidence.
PATTERNS = (
    # GitHub's service: "The self-hosted runner: NAME lost communication with the server. Verify the machine ..."
    Pattern("lost communication", RUNNER, re.compile(r"lost communication with the server", re.I)),
    # src/Runner.Worker/JobRunner.cs l.133: "The runner has received a shutdown signal. This can happen when ..."
    Pattern("shutdown signal", RUNNER, re.compile(r"received a shutdown signal", re.I)),
    # GitHub's service: "The job was not acquired by Runner of type self-hosted even after multiple attempts"
    Pattern("not acquired", RUNNER, re.compile(r"was not acquired by Runner", re.I)),
    # the OS's ENOSPC text, in a step's error; and src/Runner.Worker/JobExtension.cs l.1168:
    # "You are running out of disk space. The runner will stop working when the machine runs out of disk space."
    Pattern("disk", RUNNER, re.compile(r"No space left on device|You are running out of disk space", re.I)),
    # GitHub's service: "The job running on runner NAME has exceeded the maximum execution time of 360 minutes."
    Pattern("time limit", TIMEOUT, re.compile(r"has exceeded the maximum execution time", re.I)),
    # src/Runner.Worker/Handlers/ScriptHandler.cs l.354: "Process completed with exit code {exitCode}." 137 is
    # SIGKILL (128 + 9): the OOM killer or the host going away, not the test.
    Pattern("killed", RUNNER, re.compile(r"exit code 137\b", re.I)),
)


@dataclass(frozen=True)
class StepFact:
    name: str
    status: str | None
    conclusion: str | None


@dataclass(frozen=True)
class Twin:
    """The same job (repository, workflow, job name, head_sha) failed on a runner outside the pool."""

    job_id: int
    runner: str  # a label or runner name people know it by ("ubuntu-latest")
    failed_step: str | None


@dataclass(frozen=True)
class HostFact:
    """What the host agent said about the job's host while it ran (None fields: not known)."""

    host: str
    state: str | None = None  # "up" | "stale" | "down"
    runner: str | None = None  # "listening" | "busy" | "offline" | "unknown"
    disk_over: str | None = None  # the path above cleanup_at, if any


@dataclass(frozen=True)
class Facts:
    """Everything the cause is computed from; all of it stored, so a replay computes the same cause."""

    conclusion: str
    runner_name: str | None
    steps: tuple[StepFact, ...] = ()
    messages: tuple[str, ...] = ()  # annotation messages (and titles)
    twins: tuple[Twin, ...] = ()
    host: HostFact | None = None
    watchdog: Mapping[str, Any] | None = None
    pool: str = ""


@dataclass(frozen=True)
class Cause:
    cause: str
    evidence: str
    kind: str = ""  # short name of the evidence, for summaries ("lost communication 5, set-up 4")
    step: str | None = None  # the failed user step, if any
    extra: dict[str, Any] = field(default_factory=dict)


def is_runner_step(name: str) -> bool:
    return name in RUNNER_STEPS or name.startswith(POST_PREFIX)


def failed_step(steps: Sequence[StepFact]) -> StepFact | None:
    return next((s for s in steps if s.conclusion == "failure"), None)


MAX_STEPS, MAX_NAME = 300, 200  # what is kept of a payload's steps (they are stored with the cause)
MAX_MESSAGE = 4000  # GitHub's own texts sit at the start of an annotation; a 64 KB one is not scanned whole


def steps_from_payload(raw: object) -> tuple[StepFact, ...]:
    """`workflow_job.steps` of a webhook payload (or the REST job's): anything malformed is no step, and a payload
    cannot make the stored inputs grow without bound."""
    if not isinstance(raw, list):
        return ()
    out = []
    for item in raw[:MAX_STEPS]:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            status, conclusion = item.get("status"), item.get("conclusion")
            out.append(StepFact(item["name"][:MAX_NAME], status[:40] if isinstance(status, str) else None,
                                conclusion[:40] if isinstance(conclusion, str) else None))
    return tuple(out)


def _quote(text: str, limit: int = 80) -> str:
    """A payload string for an evidence line: one line, bounded."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def classify(facts: Facts) -> Cause:
    """The one cause of a failed job, with one line of evidence a person understands."""
    runner = _quote(facts.runner_name or "?", 60)
    if facts.watchdog and facts.watchdog.get("cancelled_at") is not None:
        why = _quote(str(facts.watchdog.get("reason") or "its max_run"))
        return Cause(TIMEOUT, f"cancelled by runnerguard's watchdog after {why}", "watchdog")
    for message in facts.messages:
        for pattern in PATTERNS:
            if pattern.regex.search(message[:MAX_MESSAGE]):
                text = {
                    "lost communication": f"runner {runner} lost communication with the server",
                    "shutdown signal": f"runner {runner} received a shutdown signal",
                    "not acquired": "the job was not acquired by a runner",
                    "disk": f"runner {runner} ran out of disk space",
                    "time limit": "the job exceeded GitHub's maximum execution time",
                    "killed": f"a step was killed on runner {runner} (exit code 137)",
                }[pattern.kind]
                return Cause(pattern.cause, text, pattern.kind)
    if facts.runner_name is None and not facts.steps and facts.conclusion != "cancelled":
        return Cause(RUNNER, "no runner picked the job up (no runner name, no steps)", "not acquired")
    if facts.host is not None:
        host = facts.host
        if host.state == "down":
            return Cause(RUNNER, f"host {host.host} was down while the job ran", "host down")
        if host.runner == "offline":
            return Cause(RUNNER, f"the runner of host {host.host} was offline while the job ran", "runner offline")
        if host.disk_over:
            return Cause(RUNNER, f"host {host.host}'s disk {_quote(host.disk_over, 40)} was above its cleanup "
                                 "threshold", "disk")
    step = failed_step(facts.steps)
    if step is not None and is_runner_step(step.name):
        return Cause(RUNNER, f"the runner's step '{_quote(step.name, 60)}' failed on {runner}", "set-up")
    unfinished = next((s for s in facts.steps if s.status == "in_progress" or
                       (s.status == "completed" and s.conclusion is None)), None)
    if step is None and unfinished is not None and facts.runner_name is not None:
        return Cause(RUNNER, f"runner {runner} stopped during step '{_quote(unfinished.name, 60)}'", "lost")
    if facts.conclusion == "timed_out":
        return Cause(TIMEOUT, "the job hit its timeout-minutes", "timeout")
    if facts.conclusion == "cancelled":
        # Without steps nothing tells a lost runner from a person's cancel: it counts neither way.
        if step is None and facts.runner_name is not None and facts.steps and not any(
                s.conclusion == "cancelled" for s in facts.steps):
            return Cause(RUNNER, f"cancelled while assigned to {runner}, no step failed", "lost")
        # A person (or a newer push) cancelled it: not the runner's doing, and not the code's either.
        return Cause(UNKNOWN, "cancelled", "cancelled", step.name if step else None, {"person": True})
    if step is not None:
        same = [t for t in facts.twins if t.failed_step == step.name]
        if same:
            twin = sorted(same, key=lambda t: t.job_id)[0]
            return Cause(CODE, f"step '{_quote(step.name, 60)}' also failed on {_quote(twin.runner, 40)} at the "
                               "same commit", "code", step.name, {"twin": twin.job_id})
        return Cause(UNKNOWN, f"step '{_quote(step.name, 60)}' failed; nothing shows whether the runner or the "
                              "code is at fault", "user step", step.name)
    return Cause(UNKNOWN, f"the job ended {facts.conclusion}; no evidence either way", "unknown")


def counts(conclusion: str | None, cause: str | None, *, person_cancel: bool, from_fork: bool | None,
           failed: frozenset[str], ignored: frozenset[str], counted: frozenset[str], count_forks: bool
           ) -> tuple[bool, bool]:
    """(finished, failed) for the failure rate.

    With no cause known yet the seed's rule holds (failure / timed_out fail, cancelled counts neither way). A cause
    outside `counted` (code, by default) leaves the job finished but not failed: the runner did its part. A
    cancelled job counts only as runner or timeout; a person's cancel counts neither way. Fork runs count neither
    way unless `count_forks`.
    """
    if conclusion is None or (from_fork and not count_forks):
        return False, False
    if conclusion == "cancelled" and "cancelled" not in failed:
        if cause in (RUNNER, TIMEOUT) and not person_cancel and cause in counted:
            return True, True
        return False, False
    if conclusion in ignored:
        return False, False
    if conclusion in failed:
        return True, cause is None or cause in counted
    return True, False


@dataclass(frozen=True)
class Summary:
    """How many counted failures were the runner's, and by what evidence (the PR's summary line)."""

    total: int
    runner: int
    kinds: tuple[tuple[str, int], ...]

    def line(self) -> str:
        if not self.total:
            return ""
        detail = ", ".join(f"{kind} {n}" for kind, n in self.kinds)
        return f"{self.runner} of {self.total} failures were the runner's" + (f": {detail}" if detail else "")


def summarize(jobs: Sequence[Mapping[str, Any]]) -> Summary:
    kinds: dict[str, int] = {}
    runner = 0
    for job in jobs:
        if job.get("failure_cause") == RUNNER:
            runner += 1
            kind = str(job.get("failure_kind") or "other")
            kinds[kind] = kinds.get(kind, 0) + 1
    ordered = tuple(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
    return Summary(total=len(jobs), runner=runner, kinds=ordered)


def twin_key_name(name: str | None) -> str:
    """A job's name without its matrix values ("test (ubuntu-latest, 3.12)" -> "test"), so matrix legs on hosted
    and self-hosted runners are the same job. String methods, not a regex: a regex anchored at the end after
    optional spaces is quadratic on a long run of spaces, and names come from workflow files."""
    text = (name or "")[:MAX_NAME]
    stripped = text.rstrip()
    if stripped.endswith(")"):
        start = stripped.rfind("(")
        base = stripped[:start].rstrip() if start > 0 else ""
        if base and ")" not in stripped[start + 1:-1]:
            return base
    return text
