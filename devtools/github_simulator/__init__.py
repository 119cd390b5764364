"""runnerguard's own GitHub API simulator: a real HTTP server on loopback that answers like GitHub's REST API."""

from devtools.github_simulator.app import create_simulator
from devtools.github_simulator.errors import ApiError
from devtools.github_simulator.gitstore import ObjectStore
from devtools.github_simulator.server import SimulatorServer
from devtools.github_simulator.state import DEFAULT_PERMISSIONS, Simulator

__all__ = ["DEFAULT_PERMISSIONS", "ApiError", "ObjectStore", "Simulator", "SimulatorServer", "create_simulator"]
