"""gunicorn settings for runnerguard's web tier (see README, "Deploying")."""

import multiprocessing
import os

# WEB_CONCURRENCY is the Procfile-host convention; default to 2 x cores + 1, capped: each request is tiny.
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, 8)))
# The request path is CPU work around one Redis round trip; a few threads per worker overlap that wait with the
# next request's work (bench/bench_ingest.py: ~40% of bare Flask with sync workers, ~50% with gthread, same settings
# for both apps).
worker_class = "gthread"
# 4 threads for intake and the API, plus one per long poll a process may hold for the runner hosts' agents
# (GET /agent/v1/work waits up to 30 s; RUNNERGUARD_AGENT_LONG_POLLS caps them per process, default 8, and answers
# the ones beyond at once). The 8 extra threads mostly sleep in a Redis BLPOP: bench/bench_agent_poll.py measures
# intake's ack latency with 20 agents polling against none.
threads = int(os.environ.get("GUNICORN_THREADS", str(4 + int(os.environ.get("RUNNERGUARD_AGENT_LONG_POLLS", "8")))))
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = "-"
access_log_format = (
    '{"remote": "%(h)s", "method": "%(m)s", "path": "%(U)s", "status": %(s)s, "bytes": "%(B)s", '
    '"duration_us": %(D)s, "delivery_id": "%({x-github-delivery}i)s"}'
)
errorlog = "-"
# gunicorn's control socket defaults to ~/.gunicorn/gunicorn.ctl (or $XDG_RUNTIME_DIR/gunicorn.ctl), one path
# shared by every gunicorn of the user: a second instance takes it over. It is off unless GUNICORN_CONTROL_SOCKET
# names a path of this instance's own (`make run` puts it under its data directory, mode 0600).
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
# A Unix socket path longer than ~107 bytes cannot be bound: rather no socket than a web tier that fails to start.
control_socket_disable = not control_socket or len(os.fsencode(control_socket)) > 100
control_socket_mode = 0o600
