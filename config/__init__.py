"""Configuration: the only reader of the environment (settings) and of the fleet policy file."""

from config.policy import Policy, load_policy, parse_policy
from config.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Policy", "Settings", "load_policy", "load_settings", "parse_policy"]
