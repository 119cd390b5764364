"""Structured JSON log lines carrying delivery_id / repo / job_id where known; never a secret or a whole payload."""

from __future__ import annotations

import logging
import sys
import time

import orjson

CONTEXT_FIELDS = ("delivery_id", "event", "action", "repo", "job_id", "task", "pool", "queue", "status", "error")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["exc"] = record.exc_info[0].__name__
        # orjson: a line per delivery and per task is on the intake's path; it is several times faster than json.
        return orjson.dumps(line, default=str).decode()


def configure(level: str = "INFO") -> None:
    """Send every runnerguard log line to stderr as JSON (idempotent)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.Formatter.converter = time.gmtime
