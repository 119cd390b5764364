"""The flask CLI commands: thin adapters over runnerguard.services."""
