"""Hostile input at POST /webhooks/github: never a 500, never an unsigned delivery accepted, nothing lost."""

from __future__ import annotations

import json

import redis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runnerguard.domain.signatures import sign
from runnerguard.store import delivery_index, jobstore, keys
from tests.helpers import SECRET, signed_headers
from tests.test_timeline import job_payload

HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(body=st.binary(max_size=4096), event=HEADER_TEXT, guid=HEADER_TEXT, signature=HEADER_TEXT)
def test_unsigned_garbage_is_refused_and_stores_nothing(app: Flask, redis_client: redis.Redis, body: bytes,
                                                        event: str, guid: str, signature: str) -> None:
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": guid, "X-Hub-Signature-256": signature}
    response = app.test_client().post("/webhooks/github", data=body, headers=headers)
    assert response.status_code == 401
    assert response.is_json
    assert delivery_index.count(redis_client) == 0


@FUZZ
@given(payload=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=30,
), event=st.sampled_from(["workflow_job", "pull_request", "ping", "installation", "star", "workflow_run"]))
def test_signed_payloads_of_any_shape_never_cause_a_500(app: Flask, payload: object, event: str) -> None:

    body = json.dumps(payload).encode()
    response = app.test_client().post("/webhooks/github", data=body, headers=signed_headers(body, event))
    assert response.status_code in (200, 202, 400), response.get_json()
    assert response.status_code == 400 or isinstance(payload, dict)


def test_nesting_bombs_huge_numbers_and_bad_encodings_are_400(app: Flask, redis_client: redis.Redis) -> None:
    client = app.test_client()
    for body in (b"[" * 50_000 + b"]" * 50_000, b'{"a": 1' + b"0" * 5000 + b"}", b'{"a": "\xff\xfe"}',
                 b"\xef\xbb\xbf{}", b'{"a": NaN}', b"", b"null"):
        response = client.post("/webhooks/github", data=body, headers=signed_headers(body, "workflow_job"))
        assert response.status_code == 400, body[:20]
    assert delivery_index.count(redis_client) == 0


def test_signature_attacks(app: Flask, redis_client: redis.Redis) -> None:
    client = app.test_client()
    body = b'{"action": "queued"}'
    good = sign(SECRET, body)
    attacks = {
        "missing": None, "empty": "", "sha1 prefix": "sha1=" + good[7:], "no prefix": good[7:],
        "upper-case hex": "sha256=" + good[7:].upper(), "truncated": good[:-1], "extended": good + "0",
        "other body": sign(SECRET, body + b" "), "other secret": sign(SECRET + "x", body), "spaces": f" {good} ",
    }
    for name, signature in attacks.items():
        headers = signed_headers(body, "workflow_job", guid=f"atk-{len(name)}")
        if signature is None:
            del headers["X-Hub-Signature-256"]
        else:
            headers["X-Hub-Signature-256"] = signature
        assert client.post("/webhooks/github", data=body, headers=headers).status_code == 401, name
    replayed = signed_headers(body, "workflow_job", guid="once")
    assert client.post("/webhooks/github", data=body, headers=replayed).status_code == 202
    assert client.post("/webhooks/github", data=body, headers=replayed).get_json()["status"] == "duplicate"
    assert delivery_index.count(redis_client) == 1


def test_payload_strings_that_look_like_paths_or_shell_are_only_data(app: Flask, redis_client: redis.Redis,
                                                                      drain) -> None:  # type: ignore[no-untyped-def]

    payload = job_payload("queued", name="$(rm -rf /); `id`", head_branch="../../../etc/passwd",
                          workflow_name="{{ config.SECRET_KEY }}<script>")
    payload["repository"]["full_name"] = "../../x/y"

    body = json.dumps(payload).encode()
    assert app.test_client().post("/webhooks/github", data=body,
                                  headers=signed_headers(body, "workflow_job", guid="evil")).status_code == 202
    drain()
    record = jobstore.decode(redis_client, redis_client.get(keys.job(3, 11)))
    assert record["name"] == "$(rm -rf /); `id`" and record["workflow"] == "{{ config.SECRET_KEY }}<script>"
