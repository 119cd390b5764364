"""Use cases shared by the tasks, the admin API and the CLI: rollback, replay, recovery, retention, reports."""
