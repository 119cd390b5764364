"""A throwaway Redis primary, its replicas and Sentinels (config files, never secrets on a command line)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from devtools.redis_server import find_redis_server, free_port

MASTER = "rgmaster"


@dataclass
class Node:
    """One redis-server (data node or Sentinel); `prefix` runs it elsewhere (`ip netns exec NS`)."""

    name: str
    host: str
    port: int
    conf: Path
    prefix: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        sentinel = ("--sentinel",) if "sentinel" in self.name else ()
        self.process = subprocess.Popen([*self.prefix, find_redis_server(), str(self.conf), *sentinel],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL: the crash a failover is for."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class SentinelSet:
    """A primary, replicas and Sentinels watching it under MASTER; `stop()` ends them all and removes their files."""

    password: str = field(repr=False)
    sentinel_password: str = field(repr=False)
    data: list[Node] = field(default_factory=list)
    sentinels: list[Node] = field(default_factory=list)
    directory: tempfile.TemporaryDirectory[str] | None = None

    @property
    def sentinel_list(self) -> str:
        """REDIS_SENTINELS's value."""
        return ",".join(node.address for node in self.sentinels)

    def client(self, node: Node, **options: object) -> redis.Redis:
        return redis.Redis(host=node.host, port=node.port, password=self.password, socket_timeout=2,
                           socket_connect_timeout=1, **options)  # type: ignore[arg-type]

    def sentinel_client(self, node: Node) -> redis.Redis:
        return redis.Redis(host=node.host, port=node.port, password=self.sentinel_password, socket_timeout=2,
                           socket_connect_timeout=1)

    def primary_address(self) -> tuple[str, int] | None:
        """What the Sentinels agree is the primary (the first that answers)."""
        for node in self.sentinels:
            try:
                host, port = self.sentinel_client(node).sentinel_get_master_addr_by_name(MASTER)
                return host.decode() if isinstance(host, bytes) else str(host), int(port)
            except (redis.RedisError, TypeError):
                continue
        return None

    def node_at(self, address: tuple[str, int]) -> Node:
        return next(n for n in self.data if (n.host, n.port) == address)

    def wait_ready(self, *, replicas: int, timeout: float = 30.0) -> None:
        """Until the primary has `replicas` replicas online and every Sentinel knows the others and the replicas."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = self.client(self.data[0]).info("replication")
                online = sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                             and v.get("state") == "online")
                masters = [self.sentinel_client(s).sentinel_master(MASTER) for s in self.sentinels]
                if online >= replicas and all(int(m["num-other-sentinels"]) >= len(self.sentinels) - 1
                                              and int(m["num-slaves"]) >= replicas for m in masters):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the Sentinel set did not come up in time")
            time.sleep(0.2)

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data]:
            node.stop()
        if self.directory is not None:
            self.directory.cleanup()
            self.directory = None

    def __enter__(self) -> SentinelSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _write(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, 0o600)  # the passwords are in it
    return path


def start_sentinel_set(*, password: str, sentinel_password: str, data_hosts: Sequence[str] = ("127.0.0.1",) * 3,
                       sentinel_hosts: Sequence[str] = ("127.0.0.1",) * 3,
                       prefixes: Sequence[tuple[str, ...]] | None = None,
                       sentinel_prefixes: Sequence[tuple[str, ...]] | None = None,
                       down_after_ms: int = 1000, failover_timeout_ms: int = 5000, ports: Sequence[int] = (),
                       wait: bool = True) -> SentinelSet:
    """The first data host is the primary, the others its replicas; Sentinels with a quorum of a majority.

    `prefixes` wrap each data node's command (e.g. `ip netns exec NS`); ports default to free loopback ports.
    """
    directory = tempfile.TemporaryDirectory(prefix="runnerguard-sentinel-")
    root = Path(directory.name)
    group = SentinelSet(password=password, sentinel_password=sentinel_password, directory=directory)
    wanted = len(data_hosts) + len(sentinel_hosts)
    port_list = list(ports) or [free_port() for _ in range(wanted)]
    primary_host, primary_port = data_hosts[0], port_list[0]
    try:
        for i, host in enumerate(data_hosts):
            work = root / f"data{i}"
            work.mkdir()
            lines = [f"bind {host}", f"port {port_list[i]}", f'dir "{work}"', 'save ""', "appendonly no",
                     "protected-mode no", f'requirepass "{password}"', f'masterauth "{password}"',
                     f'logfile "{work}/redis.log"', "repl-diskless-sync yes", "repl-diskless-sync-delay 0",
                     f"replica-announce-ip {host}"]
            if i:
                lines.append(f"replicaof {primary_host} {primary_port}")
            node = Node(f"data{i}", host, port_list[i], _write(work / "redis.conf", lines),
                        tuple(prefixes[i]) if prefixes else ())
            node.start()
            group.data.append(node)
        quorum = len(sentinel_hosts) // 2 + 1
        for j, host in enumerate(sentinel_hosts):
            work = root / f"sentinel{j}"
            work.mkdir()
            port = port_list[len(data_hosts) + j]
            lines = [f"bind {host}", f"port {port}", f'dir "{work}"', "protected-mode no",
                     f'logfile "{work}/sentinel.log"', f'requirepass "{sentinel_password}"',
                     f'sentinel sentinel-pass "{sentinel_password}"', f"sentinel announce-ip {host}",
                     f"sentinel monitor {MASTER} {primary_host} {primary_port} {quorum}",
                     f'sentinel auth-pass {MASTER} "{password}"',
                     f"sentinel down-after-milliseconds {MASTER} {down_after_ms}",
                     f"sentinel failover-timeout {MASTER} {failover_timeout_ms}",
                     f"sentinel parallel-syncs {MASTER} 2"]
            node = Node(f"sentinel{j}", host, port, _write(work / "sentinel.conf", lines),
                        tuple(sentinel_prefixes[j]) if sentinel_prefixes else ())
            node.start()
            group.sentinels.append(node)
        if wait:
            group.wait_ready(replicas=len(data_hosts) - 1)
    except BaseException:
        group.stop()
        raise
    return group
