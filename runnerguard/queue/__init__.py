"""The task table, routing, enqueueing and the RQ worker: the only place (with handlers/) that knows RQ."""
