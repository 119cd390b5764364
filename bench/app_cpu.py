"""CPU each app spends on a delivery in the app itself: its WSGI callable called in one process, no gunicorn, no
socket, no other request at the same time. bench_wrk.py runs it beside its wrk rounds, so the part of a request's
CPU that is the app's own work can be told from the server's and from waiting behind Redis.

Run: REDIS_URL=... GITHUB_WEBHOOK_SECRET=... python bench/app_cpu.py bare_app min_intake_app app [--requests 2000]
Prints one JSON object: microseconds of CPU a request, per module.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
from collections.abc import Iterable
from typing import Any

import redis
from common import generated_bodies
from werkzeug.test import EnvironBuilder

from runnerguard.domain.signatures import sign

WARM = 200


def environs(tag: str, count: int, secret: str) -> list[dict[str, Any]]:
    """`count` signed ~8 KB workflow_job deliveries, each new (its own body and delivery id)."""
    bodies = generated_bodies(count, seed=47, first_job=4_000_000_000)
    return [EnvironBuilder(path="/webhooks/github", method="POST", data=body, headers={
        "Content-Type": "application/json", "X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": f"{tag}-{n}",
        "X-Hub-Signature-256": sign(secret, body)}).get_environ() for n, body in enumerate(bodies)]


def call_all(app: Any, batch: Iterable[dict[str, Any]]) -> list[str]:
    statuses: list[str] = []

    def start_response(status: str, _headers: Any, _exc_info: Any = None) -> None:
        statuses.append(status)

    for environ in batch:
        for _chunk in app(environ, start_response):
            pass
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("modules", nargs="+", help="modules with a create_app()")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    store = redis.Redis.from_url(os.environ["REDIS_URL"])
    out: dict[str, float] = {}
    for module in args.modules:
        app = importlib.import_module(module).create_app()
        store.flushall()
        batch = environs(module, WARM + args.requests, os.environ["GITHUB_WEBHOOK_SECRET"])
        call_all(app, batch[:WARM])
        start = time.process_time()
        statuses = call_all(app, batch[WARM:])
        out[module] = (time.process_time() - start) / args.requests * 1e6
        refused = [s for s in statuses if not s.startswith("2")]
        if refused:
            raise SystemExit(f"{module} refused {len(refused)} of {len(statuses)}: {refused[0]}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
