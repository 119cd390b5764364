"""A second baseline for bench_wrk.py: the least a durable webhook intake does, in this stack.

It verifies the signature (runnerguard's own check), parses the body, and writes it with ONE script: the delivery
id and body digest as guards, the raw body, a queue push and a counter: what the issue's Node reference does (one
MULTI of SET NX and LPUSH), in Flask under the same gunicorn. No routing, no RQ job, no compression, no replica
wait. What it reaches against the bare view is the ceiling any intake with runnerguard's durability promise has
on this stack; the distance from it to runnerguard's own intake is what runnerguard's own work costs.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time

import orjson
import redis
from flask import Flask, Response, request

from runnerguard.domain.signatures import verify

_SCRIPT = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then
  redis.call('HINCRBY', 'bench:counters', 'duplicate', 1)
  return 0
end
redis.call('HSET', KEYS[1], 'event', ARGV[1], 'received_at', ARGV[2], 'body', ARGV[3])
redis.call('EXPIRE', KEYS[1], 1209600)
redis.call('SET', KEYS[2], 1, 'EX', 1209600)
redis.call('RPUSH', 'bench:inbox', KEYS[1])
redis.call('HINCRBY', 'bench:counters', 'accepted', 1)
return 1
"""


def create_app() -> Flask:
    app = Flask("min-intake")
    pool = redis.Redis.from_url(os.environ["REDIS_URL"]).connection_pool
    script = redis.Redis(connection_pool=pool).register_script(_SCRIPT)
    secrets = (os.environ["GITHUB_WEBHOOK_SECRET"],)
    local = threading.local()

    @app.post("/webhooks/github")
    def receive() -> Response:
        body = request.get_data(cache=False)
        headers = request.headers
        if not verify(secrets, body, headers.get("X-Hub-Signature-256")):
            return Response(b'{"error": "bad signature"}', status=401, mimetype="application/json")
        guid, event = headers.get("X-GitHub-Delivery", ""), headers.get("X-GitHub-Event", "")
        orjson.loads(body)
        client = getattr(local, "client", None)
        if client is None:  # one connection per thread, as runnerguard's intake keeps
            client = local.client = redis.Redis(connection_pool=pool, single_connection_client=True)
        digest = hashlib.sha256(body).hexdigest()[:32]
        new = script(keys=[f"bench:delivery:{guid}", f"bench:body:{digest}"], args=[event, time.time(), body],
                     client=client)
        return Response(orjson.dumps({"delivery": guid}), status=202 if new else 200, mimetype="application/json")

    return app
