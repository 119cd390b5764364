"""Pre-warming of runner-host caches: verified artifact installs and policy commands (the host agent runs them)."""

from runnerguard.prewarm.specs import (
    CacheSpec,
    CommandSpec,
    HostSpec,
    SpecError,
    check_unique,
    safe_name,
    safe_repo,
)
from runnerguard.prewarm.warm import CommandResult, PrewarmResult, run_command, warm_cache

__all__ = [
    "CacheSpec",
    "CommandResult",
    "CommandSpec",
    "HostSpec",
    "PrewarmResult",
    "SpecError",
    "check_unique",
    "run_command",
    "safe_name",
    "safe_repo",
    "warm_cache",
]
