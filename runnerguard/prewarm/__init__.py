"""Pre-warming of runner-host caches: verified artifact installs, policy commands, and their hit-rate stats."""

from runnerguard.prewarm.specs import CacheSpec, CommandSpec, SpecError, check_unique, safe_name, safe_repo
from runnerguard.prewarm.warm import CommandResult, PrewarmResult, run_command, warm_cache
from runnerguard.store.prewarm_stats import cache_rows, hit_rate

__all__ = [
    "CacheSpec",
    "CommandResult",
    "CommandSpec",
    "PrewarmResult",
    "SpecError",
    "cache_rows",
    "check_unique",
    "hit_rate",
    "run_command",
    "safe_name",
    "safe_repo",
    "warm_cache",
]
