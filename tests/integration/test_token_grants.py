"""Every grant against the demo auth server, and bad settings failing fast without secrets."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_lib
from support.procs import RedisServer, free_port
from test_token_harness import (
    CLIENT_SECRET,
    SECRETS,
    Demo,
    auth_for,
    demo_target,
    start_refresher,
)

pytestmark = pytest.mark.integration

RUN = "ns/grants/run1"
TOKEN_KEY = "kubeload:{ns/grants/run1}:token"
STATS_KEY = "kubeload:{ns/grants/run1}:token:stats"


def _redis(server: RedisServer) -> redis_lib.Redis:
    return redis_lib.Redis(port=server.port, password=server.password, decode_responses=True)


def _everything_in_redis(client: redis_lib.Redis, skip: str = TOKEN_KEY) -> str:
    """All keys and values of the run except the token hash itself (which must hold a token)."""
    dump = []
    for key in client.scan_iter("*"):
        if key == skip:
            continue
        kind = client.type(key)
        if kind == "hash":
            dump.append(f"{key} {client.hgetall(key)}")
        elif kind == "string":
            dump.append(f"{key} {client.get(key)}")
        elif kind == "stream":
            dump.append(f"{key} {client.xrange(key)}")
    return "\n".join(dump)


def _assert_no_secret(*texts: str, extra: tuple[str, ...] = ()) -> None:
    for text in texts:
        for secret in (*SECRETS, *extra):
            assert secret not in text, "a secret leaked into the output"
            assert secret[:8] not in text, "a secret's prefix leaked into the output"


def _use_token(demo: Demo, client: redis_lib.Redis) -> int:
    header = client.hget(TOKEN_KEY, "header")
    assert header is not None and header.startswith("Bearer ")
    return httpx.get(demo.url + "/api/items", headers={"Authorization": header}, timeout=5).status_code


@pytest.mark.parametrize("grant", ["client_credentials", "password", "refresh_token", "request"])
def test_grant_obtains_and_refreshes(grant: str, tmp_path: Path, redis: RedisServer) -> None:
    extra: dict[str, Any] = {"clientAuth": "basic"} if grant == "password" else {}
    with demo_target(tmp_path, lifetime="2s") as demo:
        refresher = start_refresher(tmp_path, redis, RUN, auth_for(demo, grant, **extra),
                                    args=("--lease-ttl", "3s"))
        try:
            refresher.wait_ready()
            client = _redis(redis)
            assert _use_token(demo, client) == 200
            # Three more versions: the refresh_token grant only gets there if every rotated
            # refresh token replaced the previous one (the demo refuses a used one).
            deadline = time.monotonic() + 10
            while int(client.hget(TOKEN_KEY, "version") or 0) < 4 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert int(client.hget(TOKEN_KEY, "version") or 0) >= 4
            assert _use_token(demo, client) == 200
            stats = client.hgetall(STATS_KEY)
            assert stats["state"] == "ok" and int(stats["refreshes"]) >= 4
            assert int(stats.get("failures", 0)) == 0
            issued = demo.stats()["issued"]
            assert issued == {grant: issued[grant]} and issued[grant] >= 4
            assert refresher.probe("/healthz") == 200
            _assert_no_secret(refresher.output(), _everything_in_redis(client, skip=TOKEN_KEY)
                              .replace(client.get("kubeload:{ns/grants/run1}:token:refresh-token")
                                       or "\0", ""))
        finally:
            refresher.stop()
        assert refresher.proc.returncode == 0


def test_request_grant_without_expiry_uses_lifetime(tmp_path: Path, redis: RedisServer) -> None:
    with demo_target(tmp_path, lifetime="10s") as demo:
        auth = auth_for(demo, "request", lifetime="1500ms")
        auth["request"]["url"] = demo.url + "/custom/token?ttl=0"
        refresher = start_refresher(tmp_path, redis, RUN, auth)
        try:
            refresher.wait_ready()
            client = _redis(redis)
            token = client.hgetall(TOKEN_KEY)
            assert float(token["expiresAt"]) - float(token["obtainedAt"]) == pytest.approx(1.5, abs=0.01)
        finally:
            refresher.stop()


def _fails_fast(tmp_path: Path, redis: RedisServer, auth: dict[str, Any], *,
                within: float, args: tuple[str, ...] = ()) -> str:
    started = time.monotonic()
    refresher = start_refresher(tmp_path, redis, RUN, auth, args=args)
    try:
        code = refresher.wait(timeout=within + 10)
    except subprocess.TimeoutExpired:
        refresher.proc.send_signal(signal.SIGUSR1)  # the refresher dumps its stacks to stderr
        time.sleep(1)
        raise
    finally:
        refresher.stop()
    elapsed = time.monotonic() - started
    output = refresher.output()
    assert code == 1, output
    assert elapsed < within, f"took {elapsed:.1f}s"
    stats = _redis(redis).hgetall(STATS_KEY)
    assert stats["state"] == "starting" and int(stats["failures"]) >= 1
    _assert_no_secret(output, _everything_in_redis(_redis(redis)))
    return output


def test_wrong_client_secret_fails_fast(tmp_path: Path, redis: RedisServer) -> None:
    wrong = "wrong-secret-planted-9e8d7c"
    with demo_target(tmp_path) as demo:
        auth = auth_for(demo, "client_credentials", clientSecret={"value": wrong})
        output = _fails_fast(tmp_path, redis, auth, within=8)
    assert "auth.clientID/auth.clientSecret" in output and "HTTP 401" in output, output
    assert "invalid_client" in output
    _assert_no_secret(output, extra=(wrong,))
    assert "after 1 try" in output  # a 401 is permanent: no pointless retries


def test_wrong_password_fails_fast(tmp_path: Path, redis: RedisServer) -> None:
    with demo_target(tmp_path) as demo:
        auth = auth_for(demo, "password", password={"value": "not-the-password-3b2a"})
        output = _fails_fast(tmp_path, redis, auth, within=8)
    assert "auth.username/auth.password" in output and "HTTP 400 (invalid_grant)" in output, output
    _assert_no_secret(output, extra=("not-the-password-3b2a",))


def test_unreachable_token_url_fails_after_bounded_tries(tmp_path: Path, redis: RedisServer) -> None:
    auth = {"grant": "client_credentials",
            "tokenURL": f"http://127.0.0.1:{free_port()}/oauth/token?secret={CLIENT_SECRET}",
            "clientID": {"value": "demo-client"}, "clientSecret": {"env": "T_CLIENT_SECRET"}}
    output = _fails_fast(tmp_path, redis, auth, within=8,
                         args=("--first-token-attempts", "3", "--backoff-base", "100ms"))
    assert "auth.tokenURL" in output and "no HTTP response" in output, output
    assert "after 3 tries" in output


def test_response_without_token_path_fails_fast(tmp_path: Path, redis: RedisServer) -> None:
    with demo_target(tmp_path) as demo:
        output = _fails_fast(tmp_path, redis,
                             auth_for(demo, "request", tokenPath="data.session.accessToken"),
                             within=8)
    assert "auth.tokenPath" in output and "HTTP 200" in output, output
    assert "'data.session.accessToken'" in output


def test_server_error_on_first_token_is_retried_then_fails(tmp_path: Path, redis: RedisServer) -> None:
    with demo_target(tmp_path) as demo:
        demo.fail_auth(30)
        output = _fails_fast(tmp_path, redis, auth_for(demo, "client_credentials"), within=8,
                             args=("--first-token-attempts", "3", "--backoff-base", "100ms"))
        assert demo.stats()["authFailuresInjected"] == 3
    assert "auth.tokenURL" in output and "HTTP 500" in output and "after 3 tries" in output


def test_expiry_without_replacement_is_recorded_then_recovers(tmp_path: Path,
                                                               redis: RedisServer) -> None:
    with demo_target(tmp_path, lifetime="1s") as demo:
        refresher = start_refresher(tmp_path, redis, RUN, auth_for(demo, "client_credentials"),
                                    args=("--backoff-base", "200ms", "--backoff-max", "500ms"))
        try:
            refresher.wait_ready()
            client = _redis(redis)
            demo.fail_auth(2.5)  # longer than the 1 s token has left
            deadline = time.monotonic() + 4
            while client.hget(STATS_KEY, "state") != "expired" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert client.hget(STATS_KEY, "state") == "expired"
            assert refresher.probe() == 503  # not ready: the token in Redis has expired
            deadline = time.monotonic() + 6
            while client.hget(STATS_KEY, "state") != "ok" and time.monotonic() < deadline:
                time.sleep(0.05)
            stats = client.hgetall(STATS_KEY)
            assert stats["state"] == "ok" and stats["expirations"] == "1"
            assert int(stats["failures"]) >= 2 and "HTTP 500" in stats["lastError"]
            assert refresher.probe() == 200
        finally:
            refresher.stop()
        assert "expired without a replacement" in refresher.output()
