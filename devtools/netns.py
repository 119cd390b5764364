"""Hosts as Linux network namespaces for the reliability runs: a bridge namespace, veth pairs, 10.77.0.0/24.

Everything made here carries the prefix `rgrel-`, lives only inside namespaces this module creates (the bridge in a
namespace of its own, never the root one), and `destroy()` removes it all, processes first. Needs root.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

PREFIX = "rgrel-"
SUBNET = "10.77.0"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


def available() -> str | None:
    """None when namespaces can be made here; else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"{PREFIX}probe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()[:200]}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass
class Network:
    """`hosts` namespaces `rgrel-<name>`, each with one address 10.77.0.<i+1>, joined by a bridge namespace."""

    names: list[str]
    client: str = "client"  # one more namespace, for the load generator and the checks (10.77.0.100)
    made: list[str] = field(default_factory=list)

    def ns(self, name: str) -> str:
        return f"{PREFIX}{name}"

    def address(self, name: str) -> str:
        return f"{SUBNET}.100" if name == self.client else f"{SUBNET}.{self.names.index(name) + 1}"

    def prefix(self, name: str) -> tuple[str, ...]:
        """The command prefix that runs a process on host `name`."""
        return ("ip", "netns", "exec", self.ns(name))

    def create(self) -> None:
        cleanup_leftovers()
        bridge = self.ns("bridge")
        _ip("netns", "add", bridge)
        self.made.append(bridge)
        _ip("-n", bridge, "link", "add", "br0", "type", "bridge")
        _ip("-n", bridge, "link", "set", "br0", "up")
        for name in [*self.names, self.client]:
            ns = self.ns(name)
            _ip("netns", "add", ns)
            self.made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            # Made inside the host's namespace, the peer moved into the bridge's: nothing touches the root one.
            _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"v-{name}"[:15], "netns", bridge)
            _ip("-n", ns, "addr", "add", f"{self.address(name)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", bridge, "link", "set", f"v-{name}"[:15], "master", "br0")
            _ip("-n", bridge, "link", "set", f"v-{name}"[:15], "up")

    def cut(self, name: str) -> None:
        """Pull the host's cable: its veth end in the bridge goes away; peers see silence, not a reset."""
        _ip("-n", self.ns("bridge"), "link", "del", f"v-{name}"[:15], check=False)

    def kill_all(self, name: str) -> int:
        """SIGKILL every process left in the host's namespace (all of them started by the run); how many."""
        pids = _ip("netns", "pids", self.ns(name), check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        return len(pids)

    def destroy(self) -> None:
        for ns in reversed(self.made):
            name = ns[len(PREFIX):]
            self.kill_all(name)
        time.sleep(0.2)
        for ns in reversed(self.made):
            _ip("netns", "del", ns, check=False)
        self.made.clear()

    @contextmanager
    def inside(self, name: str) -> Iterator[None]:
        """Run the calling thread (its new sockets, its children) in the namespace `name`, then back."""
        with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{self.ns(name)}") as there:
            if _libc.setns(there.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.ns(name)} failed")
            try:
                yield
            finally:
                if _libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back to the original namespace failed")


def cleanup_leftovers() -> None:
    """Namespaces of an earlier run of this module that died before its clean-up (only ours: the prefix)."""
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    for line in listed:
        ns = line.split(" ")[0].strip()
        if ns.startswith(PREFIX):
            for pid in _ip("netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "del", ns, check=False)
