"""The runner host's agent (`worker.py --prewarm`): an HTTP client of the web tier, never a client of its Redis."""

from runnerguard import __version__

AGENT_VERSION = __version__

__all__ = ["AGENT_VERSION"]
