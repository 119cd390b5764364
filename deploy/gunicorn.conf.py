"""gunicorn settings for runnerguard's web tier (see README, "Deploying")."""

import multiprocessing
import os

# WEB_CONCURRENCY is the Procfile-host convention; default to 2 x cores + 1, capped: each request is tiny.
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, 8)))
worker_class = "sync"
timeout = 30
graceful_timeout = 20
keepalive = 5
# The request path is verify + one Redis round trip; a slow client must not hold a worker for long.
limit_request_field_size = 8190
accesslog = "-"
access_log_format = (
    '{"remote": "%(h)s", "method": "%(m)s", "path": "%(U)s", "status": %(s)s, "bytes": "%(B)s", '
    '"duration_us": %(D)s, "delivery_id": "%({x-github-delivery}i)s"}'
)
errorlog = "-"
