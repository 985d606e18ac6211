"""Both HTTP engines against a real server on loopback: outcomes, failure reasons, TLS, pooling."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.procs import free_port
from support.target import HttpTarget, http_target, self_signed_certificate

from kubeload.worker.engine import ENGINES, EngineConfig, HttpEngine, Outcome, make_engine

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def target() -> Iterator[HttpTarget]:
    with http_target() as server:
        yield server


def send_all(engine_name: str, config: EngineConfig, requests: list[tuple[str, str, dict[str, str], bytes | None]],
             ) -> list[Outcome]:
    async def scenario() -> list[Outcome]:
        engine: HttpEngine = make_engine(engine_name, config)
        try:
            return [await engine.send(*request) for request in requests]
        finally:
            await engine.close()

    return asyncio.run(scenario())


@pytest.mark.parametrize("engine", ENGINES)
def test_responses_statuses_and_sizes(engine: str, target: HttpTarget) -> None:
    target.control(reset=True)
    outcomes = send_all(engine, EngineConfig(), [
        ("GET", target.url + "/ok", {"X-Probe": engine}, None),
        ("POST", target.url + "/created?status=201", {"Content-Type": "text/plain"}, b"x" * 1000),
        ("GET", target.url + "/broken?status=503", {}, None),
    ])
    assert [o[0] for o in outcomes] == [200, 201, 503]
    assert [o[3] for o in outcomes] == ["", "", ""]  # a 503 is a response; `expect` judges it
    assert outcomes[1][1] > 1000 > outcomes[0][1] > 0  # bytes sent include the body
    assert all(o[2] > len("ok") for o in outcomes)  # bytes received include the headers
    stats = target.stats()
    assert stats["by_header"] == {engine: 1}
    assert stats["requests"] == 3


@pytest.mark.parametrize("engine", ENGINES)
def test_failure_reasons(engine: str, target: HttpTarget) -> None:
    closed_port = free_port()  # nothing listens there
    outcomes = send_all(engine, EngineConfig(timeout_s=0.3), [
        ("GET", target.url + "/slow?sleep_ms=1000", {}, None),
        ("GET", f"http://127.0.0.1:{closed_port}/", {}, None),
    ])
    assert [(o[0], o[3]) for o in outcomes] == [(0, "timeout"), (0, "connect")]


@pytest.mark.parametrize("engine", ENGINES)
def test_tls_is_verified_unless_told_otherwise(engine: str, tmp_path: Path) -> None:
    with http_target(tls=self_signed_certificate(tmp_path)) as server:
        verified = send_all(engine, EngineConfig(), [("GET", server.url + "/", {}, None)])
        skipped = send_all(engine, EngineConfig(verify_tls=False), [("GET", server.url + "/", {}, None)])
    assert (verified[0][0], verified[0][3]) == (0, "tls")
    assert skipped[0][:1] == (200,) and skipped[0][3] == ""


@pytest.mark.parametrize("engine", ENGINES)
def test_connections_are_kept_alive(engine: str, target: HttpTarget) -> None:
    async def scenario() -> tuple[int, int]:
        engine_ = make_engine(engine, EngineConfig())
        try:
            for _ in range(3):
                await asyncio.gather(*(engine_.send("GET", target.url + "/", {}, None) for _ in range(5)))
            return target.stats()["connections"], target.stats()["requests"]
        finally:
            await engine_.close()

    target.control(reset=True)
    connections, requests = asyncio.run(scenario())
    assert requests == 15
    assert connections <= 5  # 15 requests, 5 at a time, over at most 5 reused connections
