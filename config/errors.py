"""The one error a bad configuration raises: it names the key and why, and never carries a secret."""

from runnerguard.errors import InvalidInput


class ConfigError(InvalidInput):
    """A setting or the fleet policy is wrong; the service must not start."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key}: {why}")
        self.key = key
        self.why = why
