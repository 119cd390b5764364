"""The web tier: intake, admin API, dashboard, metrics, OpenAPI. Verifies, records, enqueues; never calls GitHub."""
