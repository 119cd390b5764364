"""Configuration: the only reader of the environment (settings) and of the fleet policy file."""

from config.policy import Policy, load_policy, parse_policy
from config.settings import AgentSettings, ConfigError, Settings, load_agent_settings, load_settings

__all__ = [
    "AgentSettings",
    "ConfigError",
    "Policy",
    "Settings",
    "load_agent_settings",
    "load_policy",
    "load_settings",
    "parse_policy",
]
