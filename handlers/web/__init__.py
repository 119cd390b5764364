"""The web tier: blueprints for intake, health, and the admin API. It verifies, records, enqueues; never more."""
