"""Task bodies only, thin: load ids, call a service, return. Routing lives in runnerguard/queue (routing, tasks)."""
