"""Throw-away Redis servers on loopback: one server, or a 3-node cluster.

Used by the tests and the load-test script; needs the ``redis-server`` and ``redis-cli``
binaries (Debian package ``redis-server``). Each server runs in its own temporary directory
with append-only persistence (``appendfsync always``), so a server killed and restarted keeps
every committed budget -- what a production deployment must do too.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


class RedisUnavailable(RuntimeError):
    """redis-server is not installed or did not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    import random

    for _ in range(1000):
        port = random.randint(20_000, 45_000)
        if _bindable(port) and _bindable(port + 10_000):
            return port
    raise RedisUnavailable("no free port pair for a cluster node")


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RedisUnavailable(f"{name} not found: install the Debian package redis-server")
    return path


class RedisServer:
    """One ``redis-server`` on 127.0.0.1; ``kill()`` and ``start()`` again keep its data."""

    def __init__(self, port: int | None = None, directory: Path | None = None,
                 extra: tuple[str, ...] = ()):
        self.port = port or free_port()
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="nba-redis-"))
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "everysec",
                "--save", "", "--protected-mode", "no", *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():
                    break
            except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RedisUnavailable(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)
        client.close()
        return self

    def kill(self) -> None:
        """SIGKILL: an outage, not a shutdown."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


class RedisCluster:
    """Three master nodes, no replicas, slots split by ``redis-cli --cluster create``."""

    def __init__(self, nodes: int = 3):
        self.servers = [RedisServer(port=free_cluster_port(), extra=("--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                                           "--cluster-config-file", "nodes.conf"))
                        for _ in range(nodes)]

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self, timeout: float = 20.0) -> RedisCluster:
        try:
            for server in self.servers:
                server.start()
        except RedisUnavailable:
            self.cleanup()  # the nodes already started must not outlive a failed start
            raise
        addresses = [f"127.0.0.1:{s.port}" for s in self.servers]
        done = subprocess.run([_binary("redis-cli"), "--cluster", "create", *addresses,
                               "--cluster-replicas", "0", "--cluster-yes"],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            self.cleanup()
            raise RedisUnavailable(f"redis-cli --cluster create failed: {done.stdout}{done.stderr}")
        deadline = time.monotonic() + timeout
        while True:
            info = [redis.Redis(port=s.port).cluster("info") for s in self.servers]
            if all(i.get("cluster_state") == "ok" for i in info):
                return self
            if time.monotonic() > deadline:
                self.cleanup()
                raise RedisUnavailable("the cluster did not reach state ok")
            time.sleep(0.1)

    def cleanup(self) -> None:
        for server in self.servers:
            server.cleanup()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()
