"""Shared fixtures: the default catalog, engines on a fixed clock, a real gRPC server."""

from __future__ import annotations

import pytest

from engine.catalog import load_catalog
from engine.guards import ServerLimits
from engine.pipeline import DecisionEngine


@pytest.fixture(scope="session")
def catalog():
    return load_catalog()


@pytest.fixture
def engine(catalog, tmp_path):
    e = DecisionEngine(catalog, log_dir=tmp_path / "logs", seed=1, honour_request_time=True)
    yield e
    e.close()


@pytest.fixture
def server(catalog, tmp_path):
    """A real gRPC server on a free loopback port, honouring request times."""
    from engine.server import start_server

    e = DecisionEngine(catalog, log_dir=tmp_path / "server-logs", seed=3, honour_request_time=True)
    running = start_server(e, port=0, limits=ServerLimits(max_calls=8, max_streams=4))
    yield running
    running.stop(grace=2)


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server of our own on a free loopback port (never the machine's 6379)."""
    from harness.redis_servers import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster():
    """A real 3-node Redis Cluster on free loopback ports."""
    from harness.redis_servers import RedisCluster

    with RedisCluster() as cluster:
        yield cluster
