from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.procs import RedisServer, redis_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A real redis-server with a password on a free loopback port, stopped afterwards."""
    with redis_server() as server:
        yield server


@pytest.fixture
def kubeload_bin() -> str:
    """The `kubeload` console script of the environment running the tests."""
    candidate = Path(sys.executable).parent / "kubeload"
    if not candidate.exists():
        pytest.fail("the kubeload console script is not installed: run `make setup`")
    return str(candidate)
