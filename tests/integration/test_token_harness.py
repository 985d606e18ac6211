"""Helpers of the token integration tests (this module holds no tests).

Everything runs on loopback and is bounded in time: the demo auth server + target
(`kubeload demo-target`), `kubeload refresher` processes, and VU helper processes that run
the real `TokenCache` with aiohttp VUs (`python test_token_harness.py vus ...`): the worker
side exactly as the engine uses it, without depending on the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from support.procs import RedisServer, env_with, free_port, stop_process  # noqa: E402

KUBELOAD = str(Path(sys.executable).parent / "kubeload")
CLIENT_SECRET = "planted-client-secret-7f3a9c"
PASSWORD = "planted-password-51d2e8"
REFRESH_TOKEN = "planted-refresh-token-a4b6c1"
SECRETS = (CLIENT_SECRET, PASSWORD, REFRESH_TOKEN)
DEMO_ENV = {
    "KUBELOAD_DEMO_CLIENT_SECRET": CLIENT_SECRET,
    "KUBELOAD_DEMO_PASSWORD": PASSWORD,
    "KUBELOAD_DEMO_REFRESH_TOKEN": REFRESH_TOKEN,
}


# -- the demo auth server + target ------------------------------------------------------------

@dataclass
class Demo:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def token_url(self) -> str:
        return self.url + "/oauth/token"

    def stats(self) -> dict[str, Any]:
        return httpx.get(self.url + "/_control/stats", timeout=5).json()

    def revoke(self) -> int:
        return int(httpx.post(self.url + "/_control/revoke", timeout=5).json()["revoked"])

    def fail_auth(self, seconds: float) -> None:
        httpx.post(self.url + f"/_control/fail-auth?seconds={seconds}", timeout=5)

    def reset(self) -> None:
        httpx.post(self.url + "/_control/reset", timeout=5)


@contextlib.contextmanager
def demo_target(tmp: Path, lifetime: str = "2s", latency: str = "2ms") -> Iterator[Demo]:
    out = tmp / "demo.out"
    err = tmp / "demo.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [KUBELOAD, "demo-target", "--port", "0", "--token-lifetime", lifetime,
             "--latency", latency, "--secrets-from-env"],
            stdout=stdout, stderr=stderr, env=env_with(**DEMO_ENV))
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            text = out.read_text()
            if text.endswith("\n"):
                break
            if proc.poll() is not None:
                raise RuntimeError("demo-target exited: " + err.read_text())
            time.sleep(0.05)
        else:
            raise TimeoutError("demo-target did not print its URL")
        yield Demo(proc, json.loads(text.splitlines()[0])["url"], err)
    finally:
        stop_process(proc)


def auth_for(demo: Demo, grant: str, **extra: Any) -> dict[str, Any]:
    """A spec `auth` section for `grant` against the demo server; secrets come from env."""
    auth: dict[str, Any] = {"grant": grant}
    if grant == "client_credentials":
        auth |= {"tokenURL": demo.token_url, "clientID": {"value": "demo-client"},
                 "clientSecret": {"env": "T_CLIENT_SECRET"}}
    elif grant == "password":
        auth |= {"tokenURL": demo.token_url, "clientID": {"value": "demo-client"},
                 "clientSecret": {"env": "T_CLIENT_SECRET"}, "username": {"value": "demo"},
                 "password": {"env": "T_PASSWORD"}}
    elif grant == "refresh_token":
        auth |= {"tokenURL": demo.token_url, "refreshToken": {"env": "T_REFRESH_TOKEN"}}
    elif grant == "request":
        auth |= {
            "clientID": {"value": "demo-client"}, "clientSecret": {"env": "T_CLIENT_SECRET"},
            "request": {
                "method": "POST", "url": demo.url + "/custom/token",
                "headers": {"Content-Type": "application/json"},
                "body": '{"apiKey": "{{clientID}}", "apiSecret": "{{clientSecret}}"}',
            },
            "tokenPath": "data.session.token", "expiresInPath": "data.session.ttlSeconds",
        }
    auth |= extra
    return auth


SECRET_ENV = {"T_CLIENT_SECRET": CLIENT_SECRET, "T_PASSWORD": PASSWORD,
              "T_REFRESH_TOKEN": REFRESH_TOKEN}


# -- refresher processes ----------------------------------------------------------------------

@dataclass
class Refresher:
    name: str
    proc: subprocess.Popen[bytes]
    probe_port: int
    out: Path
    err: Path

    def probe(self, path: str = "/readyz") -> int:
        try:
            return httpx.get(f"http://127.0.0.1:{self.probe_port}{path}", timeout=2).status_code
        except httpx.HTTPError:
            return 0

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.probe() == 200:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"refresher {self.name} exited {self.proc.returncode}: "
                                   + self.output())
            time.sleep(0.05)
        raise TimeoutError(f"refresher {self.name} not ready after {timeout}s: " + self.output())

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no lease release, the standby must wait the lease out."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        stop_process(self.proc)

    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")


def start_refresher(tmp: Path, redis: RedisServer, run: str, auth: dict[str, Any], *,
                    name: str = "r1", args: tuple[str, ...] = (),
                    env: dict[str, str] | None = None) -> Refresher:
    spec = tmp / f"spec-{name}.yaml"
    spec.write_text(yaml.safe_dump({"spec": {"auth": auth}}))
    port = free_port()
    out, err = tmp / f"{name}.out", tmp / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [KUBELOAD, "refresher", "--redis-url", redis.url, "--run", run, "--spec-file", str(spec),
             "--probe-host", "127.0.0.1", "--probe-port", str(port), "--holder-id", name, *args],
            stdout=stdout, stderr=stderr,
            env=env_with(KUBELOAD_REDIS_PASSWORD=redis.password, **(SECRET_ENV | (env or {}))))
    return Refresher(name, proc, port, out, err)


# -- VU helper processes ----------------------------------------------------------------------

@dataclass
class VuResult:
    counts: dict[str, int]
    stats: dict[str, float]
    latency_by_version: dict[int, float]
    versions: list[int] = field(default_factory=list)


@dataclass
class VuFleet:
    procs: list[subprocess.Popen[bytes]]
    outs: list[Path]
    errs: list[Path]

    def wait(self, timeout: float) -> list[VuResult]:
        results = []
        for proc, out, err in zip(self.procs, self.outs, self.errs, strict=True):
            code = proc.wait(timeout)
            if code != 0:
                raise RuntimeError(f"VU process exited {code}: {err.read_text()[-3000:]}")
            data = json.loads(out.read_text())
            results.append(VuResult(data["counts"], data["stats"],
                                    {int(k): v for k, v in data["latencyByVersion"].items()},
                                    data["versions"]))
        return results

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc)

    def logs(self) -> str:
        return "\n".join(e.read_text(errors="replace") for e in self.errs)


def start_vus(tmp: Path, redis: RedisServer, run: str, target: str, *, processes: int, vus: int,
              duration: float) -> VuFleet:
    """`processes` VU processes sharing `vus` VUs, each running the real TokenCache."""
    procs, outs, errs = [], [], []
    for index in range(processes):
        out, err = tmp / f"vus-{index}.json", tmp / f"vus-{index}.err"
        with err.open("wb") as stderr:
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "vus", "--redis-url", redis.url, "--run", run,
                 "--target", target, "--vus", str(vus // processes + (index < vus % processes)),
                 "--duration", str(duration), "--out", str(out), "--worker-id", f"w{index}"],
                stdout=subprocess.DEVNULL, stderr=stderr,
                env=env_with(KUBELOAD_REDIS_PASSWORD=redis.password)))
        outs.append(out)
        errs.append(err)
    return VuFleet(procs, outs, errs)


def fleet_summary(results: list[VuResult]) -> dict[str, Any]:
    """Totals over the VU processes and the publish -> held latency of the slowest process for
    each version (what "every process holds the new version within X ms" means)."""
    totals: Counter[str] = Counter()
    for result in results:
        totals.update(result.counts)
    common = set.intersection(*(set(r.latency_by_version) for r in results)) if results else set()
    slowest = sorted(max(r.latency_by_version[v] for r in results) for v in common)

    def pct(q: float) -> float:
        return slowest[min(len(slowest) - 1, round(q * (len(slowest) - 1)))] if slowest else 0.0

    return {"totals": dict(totals), "versions_all_held": len(common),
            "fleet_p50_ms": pct(0.5), "fleet_p99_ms": pct(0.99),
            "fleet_max_ms": slowest[-1] if slowest else 0.0}


async def _vus_main(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp
    import redis.asyncio as aioredis

    from kubeload.protocol import RunKeys
    from kubeload.worker.token import TokenCache

    password = os.environ.get("KUBELOAD_REDIS_PASSWORD")
    cache = TokenCache(lambda: aioredis.Redis.from_url(args.redis_url, password=password),
                       RunKeys(*args.run.split("/")), "Authorization", args.worker_id)
    await cache.start()
    await cache.wait_ready(timeout=15)
    counts: Counter[str] = Counter()
    versions: set[int] = set()
    deadline = time.monotonic() + args.duration
    url = args.target + "/api/items"

    async def vu(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            version = cache.version
            header = cache.header
            assert header is not None
            versions.add(version)
            status = await send(session, header)
            counts["requests"] += 1
            if status == 401:
                counts["unauthorized_first"] += 1
                if await cache.on_unauthorized(version):
                    header = cache.header
                    assert header is not None
                    counts["retried"] += 1
                    status = await send(session, header)
                if status == 401:
                    counts["lost"] += 1
            counts["ok" if 200 <= status < 300 else "failed"] += 1

    async def send(session: aiohttp.ClientSession, header: tuple[str, str]) -> int:
        try:
            async with session.get(url, headers={header[0]: header[1]}) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError):
            counts["errors"] += 1
            await asyncio.sleep(0.01)
            return 0

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=10)) as session:
        await asyncio.gather(*(vu(session) for _ in range(args.vus)))
    await cache.close()
    return {"counts": dict(counts), "stats": cache.stats(),
            "latencyByVersion": cache.latency_by_version(), "versions": sorted(versions)}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    vus = sub.add_parser("vus")
    for flag in ("--redis-url", "--run", "--target", "--out", "--worker-id"):
        vus.add_argument(flag, required=True)
    vus.add_argument("--vus", type=int, required=True)
    vus.add_argument("--duration", type=float, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_vus_main(args))
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
