"""The agent's request bodies (report, done), validated strictly: a runner host runs other people's code."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from runnerguard.domain.hosts import RUNNER_STATES, valid_name
from runnerguard.errors import InvalidInput

MAX_BODY_BYTES = 64 * 1024
DONE_STATES = ("hit", "installed", "ran", "skipped", "error")
SERVICE_STATES = ("active", "inactive", "failed")
REPORT_KEYS = frozenset({"agent_version", "uptime", "load", "memory", "disk", "runner", "cleanups", "cache_answers"})
RUNNER_KEYS = frozenset({"state", "detail", "job", "service"})
CLEANUP_KEYS = frozenset({"at", "freed_bytes", "removed", "dry_run"})
DONE_KEYS = frozenset({"state", "bytes", "seconds", "error"})
MAX_PATHS = 32
MAX_CLEANUPS = 20
MAX_REMOVED = 50
MAX_TEXT = 500
MAX_PATH_CHARS = 4096


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{where} must be a JSON object")
    return value


def _known(table: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in set(table) - allowed)
    if unknown:
        raise InvalidInput(f"unknown key(s) in {where}: {', '.join(k[:40] for k in unknown[:5])}")


def _number(value: object, where: str, *, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < low:
        raise InvalidInput(f"{where} must be a number of at least {low:g}")
    return float(value)


def _count(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2**62:
        raise InvalidInput(f"{where} must be a whole number of at least 0")
    return value


def _text(value: object, where: str, *, limit: int = MAX_TEXT, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or len(value) > limit or any(ord(c) < 32 and c not in "\t" for c in value):
        raise InvalidInput(f"{where} must be a string of at most {limit} characters without control characters")
    return value


def _path(value: str, where: str) -> str:
    if not value.startswith("/") or len(value) > MAX_PATH_CHARS or "\x00" in value:
        raise InvalidInput(f"{where} must be absolute paths")
    return value


def parse_report(body: object) -> dict[str, Any]:
    """The report, normalised; InvalidInput naming the first thing wrong (unknown keys by name)."""
    table = _object(body, "the report")
    _known(table, REPORT_KEYS, "the report")
    out: dict[str, Any] = {
        "agent_version": _text(table.get("agent_version"), "agent_version", limit=64, nullable=True),
        "uptime": _number(table["uptime"], "uptime") if table.get("uptime") is not None else None,
    }
    load = table.get("load", [])
    if not isinstance(load, list) or len(load) > 3:
        raise InvalidInput("load must be a list of up to 3 numbers (1m, 5m, 15m)")
    out["load"] = [_number(x, "load") for x in load]
    memory = _object(table.get("memory", {}), "memory")
    _known(memory, frozenset({"total", "available"}), "memory")
    out["memory"] = {k: _count(v, f"memory.{k}") for k, v in memory.items()}
    disk = _object(table.get("disk", {}), "disk")
    if len(disk) > MAX_PATHS:
        raise InvalidInput(f"disk may name at most {MAX_PATHS} paths")
    out["disk"] = {}
    for path, raw_row in disk.items():
        row = _object(raw_row, "disk[path]")
        _known(row, frozenset({"total", "used", "free"}), "disk[path]")
        out["disk"][_path(str(path), "disk keys")] = {k: _count(row.get(k, 0), f"disk[path].{k}")
                                                      for k in ("total", "used", "free")}
    out["runner"] = _runner(table.get("runner", {}))
    cleanups = table.get("cleanups", [])
    if not isinstance(cleanups, list) or len(cleanups) > MAX_CLEANUPS:
        raise InvalidInput(f"cleanups must be a list of at most {MAX_CLEANUPS}")
    out["cleanups"] = [_cleanup(c) for c in cleanups]
    answers = _object(table.get("cache_answers", {}), "cache_answers")
    if len(answers) > 256:
        raise InvalidInput("cache_answers names too many caches")
    out["cache_answers"] = {}
    for name, raw_counts in answers.items():
        if not valid_name(name):
            raise InvalidInput("cache_answers keys must be cache names")
        counts = _object(raw_counts, "cache_answers[name]")
        _known(counts, frozenset({"hit", "waited"}), "cache_answers[name]")
        out["cache_answers"][name] = {k: _count(counts.get(k, 0), f"cache_answers[name].{k}")
                                      for k in ("hit", "waited")}
    return out


def _runner(value: object) -> dict[str, Any]:
    runner = _object(value, "runner")
    _known(runner, RUNNER_KEYS, "runner")
    state = runner.get("state", "unknown")
    if state not in RUNNER_STATES:
        raise InvalidInput(f"runner.state must be one of {', '.join(RUNNER_STATES)}")
    service = runner.get("service")
    if service is not None and service not in SERVICE_STATES:
        raise InvalidInput(f"runner.service must be one of {', '.join(SERVICE_STATES)} or null")
    job = runner.get("job")
    if job is not None:
        job = _object(job, "runner.job")
        _known(job, frozenset({"name"}), "runner.job")
        job = {"name": _text(job.get("name"), "runner.job.name", limit=200)}
    return {"state": state, "detail": _text(runner.get("detail", ""), "runner.detail"), "job": job,
            "service": service}


def _cleanup(value: object) -> dict[str, Any]:
    cleanup = _object(value, "cleanups[]")
    _known(cleanup, CLEANUP_KEYS, "cleanups[]")
    removed = cleanup.get("removed", [])
    if not isinstance(removed, list) or not all(isinstance(r, str) for r in removed):
        raise InvalidInput("cleanups[].removed must be a list of paths")
    dry_run = cleanup.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidInput("cleanups[].dry_run must be true or false")
    return {"at": _number(cleanup.get("at", 0), "cleanups[].at"),
            "freed_bytes": _count(cleanup.get("freed_bytes", 0), "cleanups[].freed_bytes"),
            # the paths are the host's own; kept as data (capped), never used as paths here
            "removed": [_text(r, "cleanups[].removed", limit=MAX_PATH_CHARS) for r in removed[:MAX_REMOVED]],
            "removed_count": len(removed), "dry_run": dry_run}


def parse_done(body: object) -> dict[str, Any]:
    """A work item's result."""
    table = _object(body, "the result")
    _known(table, DONE_KEYS, "the result")
    state = table.get("state")
    if state not in DONE_STATES:
        raise InvalidInput(f"state must be one of {', '.join(DONE_STATES)}")
    return {"state": state, "bytes": _count(table.get("bytes", 0), "bytes"),
            "seconds": _number(table.get("seconds", 0.0), "seconds"),
            "error": _text(table.get("error"), "error", nullable=True)}
