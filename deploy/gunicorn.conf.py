"""gunicorn settings for runnerguard's web tier (see README, "Deploying")."""

import multiprocessing
import os

# WEB_CONCURRENCY is the Procfile-host convention; default to 2 x cores + 1, capped: each request is tiny.
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, 8)))
# The request path is CPU work around one Redis round trip; a few threads per worker overlap that wait with the
# next request's work (bench/bench_ingest.py: ~40% of bare Flask with sync workers, ~50% with gthread, same settings
# for both apps).
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = "-"
access_log_format = (
    '{"remote": "%(h)s", "method": "%(m)s", "path": "%(U)s", "status": %(s)s, "bytes": "%(B)s", '
    '"duration_us": %(D)s, "delivery_id": "%({x-github-delivery}i)s"}'
)
errorlog = "-"
