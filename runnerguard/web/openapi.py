"""The admin API as an OpenAPI 3.0 document (served at GET /api/openapi.json by runnerguard/web/admin.py)."""

from __future__ import annotations

from typing import Any

from runnerguard import __version__

ERROR = {"$ref": "#/components/schemas/Error"}
NULLABLE_STR = {"type": "string", "nullable": True}
NULLABLE_NUM = {"type": "number", "nullable": True}
NULLABLE_INT = {"type": "integer", "nullable": True}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "bad request", 401: "no token", 403: "wrong token, or the admin API is off", 404: "not found",
            409: "not possible in the current state",
            429: "too many failed tokens from this address or in all; see Retry-After"}
    return {str(code): _json(ERROR, text[code]) for code in codes}


AUTH = (401, 403, 429)
FILTERS = [
    {"name": name, "in": "query", "required": False, "schema": {"type": "string", "maxLength": 200}}
    for name in ("since", "until", "event", "action", "repo", "state", "cursor")
]
LIMIT = {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1,
                                                                       "maximum": 500}}
GUID = {"name": "guid", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"}}

CAUSE_NAMES = ("runner", "code", "timeout", "unknown")
JOB = {"type": "object", "properties": {
    "repo": {"type": "string"}, "job_id": {"type": "integer"}, "run_id": NULLABLE_INT, "run_attempt": NULLABLE_INT,
    "workflow": NULLABLE_STR, "name": NULLABLE_STR, "labels": {"type": "array", "items": {"type": "string"}},
    "pools": {"type": "array", "items": {"type": "string"}}, "runner_name": NULLABLE_STR, "status": {"type": "string"},
    "conclusion": NULLABLE_STR, "created_at": NULLABLE_STR, "started_at": NULLABLE_STR, "completed_at": NULLABLE_STR,
    "queue_seconds": NULLABLE_NUM, "run_seconds": NULLABLE_NUM,
    # true when no delivery carried created_at (older GHES): created_at is then the best time known
    "created_at_approximate": {"type": "boolean", "nullable": True},
    # why a failed job failed (null until its cause task ran, and for jobs that did not fail)
    "failure_cause": {"type": "string", "nullable": True, "enum": [*CAUSE_NAMES, None]},
    "failure_evidence": NULLABLE_STR,
    # "rest" when the job's latest state was read back from GitHub's API by the watchdog
    "source": {"type": "string", "nullable": True},
    # what the watchdog did to the job: cancelled_at, forced_at, rerun_at (epoch seconds), reason
    "watchdog": {"type": "object", "nullable": True},
}, "required": ["repo", "job_id", "labels", "pools", "status"]}
DELIVERY = {"type": "object", "properties": {
    "guid": {"type": "string"}, "event": {"type": "string"}, "action": NULLABLE_STR, "repo": NULLABLE_STR,
    "installation_id": NULLABLE_INT, "hook_id": NULLABLE_STR, "received_at": {"type": "number"},
    "received_at_iso": NULLABLE_STR,
    "state": {"type": "string", "enum": ["queued", "running", "done", "failed", "ignored"]},
    "tasks": {"type": "object", "additionalProperties": {"type": "string"}},
    "errors": {"type": "object", "additionalProperties": {"type": "string"}},
}, "required": ["guid", "event", "received_at", "state", "tasks"]}
REPLAY = {"type": "object", "properties": {
    "id": {"type": "string"}, "state": {"type": "string", "enum": ["queued", "running", "done", "cancelled", "failed"]},
    "total": {"type": "integer"}, "done": {"type": "integer"}, "errors": {"type": "integer"},
    "filter": {"type": "object"},
}, "required": ["id", "state", "total", "done", "errors"]}
FILTER_BODY = {"type": "object", "properties": {
    key: {"type": "string", "maxLength": 200} for key in ("since", "until", "event", "action", "repo", "state")
}, "additionalProperties": False}
ROLLBACK = {"type": "object", "properties": {
    "pool": {"type": "string"}, "repo": {"type": "string"},
    "state": {"type": "string", "enum": ["healthy", "pr_open", "rolled_back", "restoring", "blocked"]},
    # for "blocked", `reason` says why the PR could not be opened and `trigger_summary` what fired
    "trigger": NULLABLE_STR, "reason": NULLABLE_STR, "trigger_summary": NULLABLE_STR,
    "pr_url": NULLABLE_STR, "pr_number": NULLABLE_INT,
    "opened_at": NULLABLE_NUM, "updated_at": NULLABLE_NUM,
}, "required": ["pool", "repo", "state"]}
QUEUED = {"type": "object", "properties": {"state": {"type": "string"}}, "required": ["state"]}
HOST_NAME = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}
DISK = {"type": "object", "properties": {"total": {"type": "integer"}, "used": {"type": "integer"},
                                         "free": {"type": "integer"}, "used_ratio": NULLABLE_NUM},
        "required": ["total", "used", "free", "used_ratio"]}
HOST = {"type": "object", "properties": {
    "name": {"type": "string"}, "last_seen": NULLABLE_NUM,
    "state": {"type": "string", "enum": ["up", "stale", "down"]},
    "runner": {"type": "string", "enum": ["listening", "busy", "offline", "unknown"]},
    "disk": {"type": "object", "additionalProperties": DISK}, "memory": {"type": "object"},
    "load": {"type": "array", "items": {"type": "number"}}, "uptime": NULLABLE_NUM,
    "job": {"type": "object", "nullable": True, "properties": {"name": {"type": "string"}}},
    "agent_version": NULLABLE_STR, "cleanup_at": {"type": "number"}, "healthy_since": NULLABLE_NUM,
}, "required": ["name", "last_seen", "state", "runner", "disk", "memory", "load", "job", "agent_version"]}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "runnerguard admin API", "version": __version__,
             "description": "Job timings, pools, the delivery log and replays, rollbacks, caches and runner hosts."},
    "components": {
        "securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}},
        "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}},
    },
    "security": [{"admin": []}],
    "paths": {
        "/api/jobs": {"get": {
            "summary": "Job timings, newest first",
            "parameters": [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                           for n in ("repo", "pool")] + [
                {"name": "since", "in": "query", "required": False,
                 "schema": {"type": "string", "format": "date-time"}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 5000}}],
            "responses": {"200": _json({"type": "object", "properties": {"jobs": {"type": "array", "items": JOB}},
                                        "required": ["jobs"]}), **_errors(400, *AUTH)},
        }},
        "/api/pools": {"get": {
            "summary": "Each pool's finished and failed jobs over 24 h",
            "responses": {"200": _json({"type": "object", "properties": {"pools": {"type": "array", "items": {
                "type": "object", "properties": {"name": {"type": "string"}, "finished_24h": {"type": "integer"},
                                                 "failed_24h": {"type": "integer"},
                                                 "failure_rate_24h": NULLABLE_NUM,
                                                 "failed_by_cause": {"type": "object", "properties": {
                                                     c: {"type": "integer"} for c in CAUSE_NAMES}}},
                "required": ["name", "labels", "finished_24h", "failed_24h", "failure_rate_24h"]}}},
                "required": ["pools"]}), **_errors(*AUTH)},
        }},
        "/api/deliveries": {"get": {
            "summary": "The delivery log, oldest first, a page at a time",
            "parameters": [*FILTERS, LIMIT],
            "responses": {"200": _json({"type": "object", "properties": {
                "deliveries": {"type": "array", "items": DELIVERY}, "next": NULLABLE_STR},
                "required": ["deliveries", "next"]}), **_errors(400, *AUTH)},
        }},
        "/api/deliveries/{guid}": {"get": {
            "summary": "One delivery: headers, payload, state, attempts", "parameters": [GUID],
            "responses": {"200": _json(DELIVERY), **_errors(*AUTH, 404)},
        }},
        "/api/deliveries/{guid}/replay": {"post": {
            "summary": "Run the delivery's handlers again", "parameters": [GUID],
            "responses": {"202": _json({"type": "object", "properties": {
                "delivery": {"type": "string"}, "queued": {"type": "array", "items": {"type": "string"}}},
                "required": ["delivery", "queued"]}, "queued"), **_errors(*AUTH, 404)},
        }},
        "/api/replays": {"post": {
            "summary": "Replay every delivery matching a filter (asynchronous)",
            "requestBody": {"required": False, "content": {"application/json": {"schema": FILTER_BODY}}},
            "responses": {"202": _json({"type": "object", "properties": {"id": {"type": "string"},
                                                                          "state": {"type": "string"}},
                                        "required": ["id", "state"]}, "queued"), **_errors(400, *AUTH)},
        }},
        "/api/replays/{replay_id}": {
            "get": {"summary": "A bulk replay's progress",
                    "parameters": [{"name": "replay_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {"200": _json(REPLAY), **_errors(*AUTH, 404)}},
            "delete": {"summary": "Cancel a bulk replay",
                       "parameters": [{"name": "replay_id", "in": "path", "required": True,
                                       "schema": {"type": "string"}}],
                       "responses": {"200": _json(REPLAY), **_errors(*AUTH, 404)}},
        },
        "/api/rollbacks": {
            "get": {"summary": "Rollback state per pool and repository",
                    "responses": {"200": _json({"type": "object", "properties": {
                        "rollbacks": {"type": "array", "items": ROLLBACK}}, "required": ["rollbacks"]}),
                        **_errors(*AUTH)}},
            "post": {"summary": "Open a rollback by hand",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "properties": {"pool": {"type": "string"}, "repo": {"type": "string"},
                                                          "note": {"type": "string", "maxLength": 500}},
                         "required": ["pool"]}}}},
                     "responses": {"202": _json(QUEUED, "queued"), **_errors(400, *AUTH)}},
        },
        "/api/rollbacks/{pool}/restore": {"post": {
            "summary": "Open the restore PR of a rolled-back pool",
            "parameters": [{"name": "pool", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"repo": {"type": "string"}}, "required": ["repo"]}}}},
            "responses": {"202": _json(QUEUED, "queued"), **_errors(400, *AUTH, 404, 409)},
        }},
        "/api/scorecard": {"get": {
            "summary": "The scorecard per pool (targets from the policy): target, actual, pass/fail",
            "responses": {"200": _json({"type": "object", "properties": {
                "generated_at": {"type": "number"}, "window_days": {"type": "integer"},
                "rows": {"type": "array", "items": {"type": "object", "properties": {
                    "pool": {"type": "string"}, "metric": {"type": "string"}, "title": {"type": "string"},
                    "target": {"type": "string"}, "actual": NULLABLE_NUM, "actual_text": {"type": "string"},
                    "status": {"type": "string"}}, "required": ["pool", "metric", "target", "status"]}}},
                "required": ["rows"]}), **_errors(*AUTH)},
        }},
        "/api/hosts": {
            "get": {"summary": "Runner hosts as their agents report them: state, disks, runner, job",
                    "responses": {"200": _json({"type": "object", "properties": {
                        "hosts": {"type": "array", "items": HOST}}, "required": ["hosts"]}), **_errors(*AUTH)}},
            "post": {"summary": "Add a runner host; the answer carries its token, the only time it is shown",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "properties": {"name": HOST_NAME}, "required": ["name"],
                         "additionalProperties": False}}}},
                     "responses": {"201": _json({"type": "object", "properties": {
                         "name": {"type": "string"}, "token": {"type": "string"}}, "required": ["name", "token"]},
                         "created"), **_errors(400, *AUTH, 409)}},
        },
        "/api/hosts/{name}": {"delete": {
            "summary": "Revoke a runner host's token",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json({"type": "object", "properties": {
                "name": {"type": "string"}, "revoked": {"type": "boolean"}}, "required": ["name", "revoked"]}),
                **_errors(400, *AUTH, 404)},
        }},
        "/api/watchdog": {"get": {
            "summary": "The watchdog per pool (max_run, force_after, retries; blocked without a permission)",
            "responses": {"200": _json({"type": "object", "properties": {
                "pools": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "max_run_seconds": NULLABLE_INT,
                    "force_after_seconds": {"type": "integer"}, "retry_runner_failures": {"type": "integer"},
                    "state": {"type": "string", "enum": ["watching", "off", "blocked"]}, "reason": NULLABLE_STR},
                    "required": ["name", "state"]}},
                "blocked": {"type": "array", "items": {"type": "object", "properties": {
                    "repo": {"type": "string"}, "permission": {"type": "string"}, "reason": {"type": "string"},
                    "at": {"type": "number"}}, "required": ["repo", "permission", "reason", "at"]}},
                "recent": {"type": "array", "items": {"type": "object"}}},
                "required": ["pools", "blocked", "recent"]}), **_errors(*AUTH)},
        }},
        "/api/caches": {"get": {
            "summary": "Pre-warmed caches per host",
            "parameters": [{"name": "host", "in": "query", "required": False, "schema": {"type": "string"}}],
            "responses": {"200": _json({"type": "object", "properties": {"caches": {"type": "array", "items": {
                "type": "object", "properties": {"name": {"type": "string"}, "host": {"type": "string"},
                                                 "state": {"type": "string"}, "hit_rate": NULLABLE_NUM},
                "required": ["name", "host", "state"]}}}, "required": ["caches"]}), **_errors(400, *AUTH)},
        }},
    },
}
