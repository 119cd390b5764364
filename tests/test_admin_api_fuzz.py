"""The admin API against its own OpenAPI document, fuzzed with schemathesis: no 500, answers as documented."""

from __future__ import annotations

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from runnerguard.web.openapi import OPENAPI
from tests.helpers import admin_headers
from tests.test_timings import deliver, job_events

OPERATIONS = [result.ok() for result in schemathesis.openapi.from_dict(OPENAPI).get_all_operations()]


@pytest.fixture()
def seeded_app(app: Flask) -> Flask:
    client = app.test_client()
    for i, event in enumerate(job_events(1, "failure", created=1_790_000_000)):
        deliver(client, event, f"fuzz-{i}")
    return app


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_admin_api_conforms_and_never_fails(seeded_app: Flask, operation) -> None:  # type: ignore[no-untyped-def]
    # The app's own document, fetched the way a client would, drives the generated requests.
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", seeded_app)
    live = schema[operation.path][operation.method.upper()]

    @given(case=live.as_strategy())
    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    def run(case) -> None:  # type: ignore[no-untyped-def]
        # The wrong tokens below would soon be throttled (429, tests/test_login_hardening.py): a fresh window each.
        for key in seeded_app.extensions["runnerguard"].redis.scan_iter("rg:auth:*"):
            seeded_app.extensions["runnerguard"].redis.delete(key)
        # Every check but "schema-valid data is accepted": an opaque cursor or a repo that does not exist is
        # schema-valid and still, rightly, a 400 or an empty answer.
        case.call_and_validate(headers=admin_headers(), excluded_checks=[positive_data_acceptance])
        # Without our token (schemathesis may send a made-up bearer of its own): refused, never served.
        unauthenticated = case.call(headers={"Authorization": "Bearer not-the-token"})
        assert unauthenticated.status_code == 403, (case.path, unauthenticated.status_code)

    run()


def test_the_document_is_served_without_a_token(client) -> None:  # type: ignore[no-untyped-def]
    doc = client.get("/api/openapi.json").get_json()
    assert doc["openapi"].startswith("3.") and "/api/deliveries/{guid}/replay" in doc["paths"]
