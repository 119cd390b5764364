"""The only owner of Redis key names and Lua scripts: deliveries, jobs, rollbacks, replays, metrics, caches."""
