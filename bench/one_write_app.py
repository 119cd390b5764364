"""A third baseline for bench_wrk.py: the bare view plus one durable write of one byte.

It reads the body, SETs one byte under the delivery id (one round trip, no script, no signature check, no parse)
and answers 202. Against the bare view it shows what a single acknowledged write costs this stack by itself, under
Redis's `appendfsync always` (the intake's durability promise): the floor under the least durable intake, whose
own work (verify, parse, a script holding the 8 KB body) comes on top of it.
"""

from __future__ import annotations

import os
import threading

import redis
from flask import Flask, Response, request


def create_app() -> Flask:
    app = Flask("one-write")
    pool = redis.Redis.from_url(os.environ["REDIS_URL"]).connection_pool
    local = threading.local()

    @app.post("/webhooks/github")
    def receive() -> Response:
        request.get_data(cache=False)
        client = getattr(local, "client", None)
        if client is None:  # one connection per thread, as runnerguard's intake keeps
            client = local.client = redis.Redis(connection_pool=pool, single_connection_client=True)
        client.set(f"bench:one:{request.headers.get('X-GitHub-Delivery', '')}", b"1")
        return Response(b"{}", status=202, mimetype="application/json")

    return app
