"""runnerguard: guards self-hosted GitHub Actions runners (shared domain code and adapters; no Flask, no RQ)."""

__version__ = "0.1.0"
APP_NAME = "runnerguard"
