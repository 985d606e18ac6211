"""Redis commands per HTTP request: kubeload's cached token vs reading it before every request.

Two runs against the same demo auth server + target (`kubeload demo-target`), the same VUs
and duration, each with its own redis-server; Redis `INFO commandstats` is read before and
after each run, and a MONITOR connection attributes every command to its key family:

- kubeload: a real `kubeload refresher` and real `kubeload worker` processes (default 2
  workers x 2 processes, 200 VUs, 20 s, tokens living 2 s, so ~13 refreshes: a stress case;
  `--token-lifetime 5m` is closer to real life). Goal: below 0.001 command per request.
- recipe: the k6 + xk6-redis recipe (a token-manager writes the token with SETEX, every VU
  GETs it before each request), as aiohttp VU processes: 1 command per request by design.

Run: `.venv/bin/python bench/redis_per_request.py [--seconds 20] [--vus 200]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import REDIS_PASSWORD as PASSWORD
from harness import BenchRedis, bench_redis
from nginx_target import free_port

KUBELOAD = str(Path(sys.executable).parent / "kubeload")
# Commands the bench itself sends (reading the stats, attributing commands): not counted.
BENCH_COMMANDS = {"info", "monitor", "config|resetstat", "ping"}


def commandstats(server: BenchRedis) -> Counter[str]:
    stats = server.client().info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


@contextmanager
def demo_target(lifetime: str) -> Iterator[str]:
    proc = subprocess.Popen([KUBELOAD, "demo-target", "--port", "0", "--token-lifetime", lifetime],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())["url"]
    finally:
        proc.terminate()
        proc.wait(10)


def _http_json(url: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:  # loopback only
        return json.loads(response.read())


class Monitor:
    """Counts commands by family (token / engine / connection) with Redis MONITOR."""

    def __init__(self, server: BenchRedis) -> None:
        self.families: Counter[str] = Counter()
        self.token_commands: Counter[str] = Counter()
        self.round_trips: Counter[str] = Counter()  # sent by clients (not run inside a script)
        self._client = server.client()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        time.sleep(0.2)

    def _run(self) -> None:
        with self._client.monitor() as monitor:
            for entry in monitor.listen():
                if self._stop.is_set():
                    return
                command = entry.get("command", "")
                name = command.split(" ", 1)[0].lower()
                if name in BENCH_COMMANDS or name == "exec" or name == "multi":
                    continue
                if ":token" in command or ":lease:" in command:
                    family = "token"
                    self.token_commands[name] += 1
                elif name in ("hello", "auth", "client", "select"):
                    family = "connection setup"
                else:
                    family = "engine (plan, stop, heartbeats, metrics)"
                self.families[family] += 1
                if entry.get("client_type") != "lua":
                    self.round_trips[family] += 1

    def stop(self) -> None:
        self._stop.set()
        self._client.ping()  # wakes the MONITOR loop up
        self._thread.join(5)


def _delta(before: Counter[str], after: Counter[str]) -> Counter[str]:
    delta = Counter({k: after[k] - before.get(k, 0) for k in after})
    for name in BENCH_COMMANDS:
        delta.pop(name, None)
    return +delta


def _client_credentials(url: str) -> dict[str, Any]:
    """The spec's auth block: client credentials at the demo auth server `url`."""
    return {"grant": "client_credentials", "tokenURL": url + "/oauth/token",
            "clientID": {"value": "demo-client"}, "clientSecret": {"value": "demo-secret"}}


def run_kubeload(args: argparse.Namespace) -> dict[str, Any]:
    from kubeload.protocol import Plan, RunKeys

    run_id = uuid.uuid4().hex[:8]
    run = f"bench/token/{run_id}"
    with bench_redis(core=None) as server, demo_target(args.token_lifetime) as url:
        env = dict(os.environ, KUBELOAD_REDIS_PASSWORD=PASSWORD)
        auth = _client_credentials(url)
        spec = {"target": {"baseURL": url}, "requests": [{"name": "items", "path": "/api/items"}],
                "load": {"executor": "constant-vus", "vus": args.vus, "duration": f"{args.seconds}s",
                         "thinkTime": args.think_time},
                "auth": auth, "workers": {"processesPerWorker": args.processes}}
        refresher = _start_refresher(server, url, run, spec)
        workers: list[subprocess.Popen[bytes]] = []
        try:
            monitor = Monitor(server)
            before = commandstats(server)
            served_before = _http_json(url + "/_control/stats")["served"]
            plan = Plan(run_id=run_id, start_at=time.time() + 4.0, workers=args.workers, spec=spec)
            server.client().set(RunKeys(*run.split("/")).plan, plan.to_json())
            workers = [subprocess.Popen(
                [KUBELOAD, "worker", "--redis-url", server.url, "--run", run, "--index", str(i),
                 "--processes", str(args.processes), "--id", f"w{i}"],
                env=env, stderr=subprocess.DEVNULL) for i in range(args.workers)]
            codes = [w.wait(args.seconds + 60) for w in workers]
            after = commandstats(server)
            monitor.stop()
            stats = _http_json(url + "/_control/stats")
        finally:
            for proc in (*workers, refresher):
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(15)
    requests = stats["served"] - served_before + stats["unauthorized"]
    commands = _delta(before, after)
    return {"requests": requests, "commands": commands, "families": monitor.families,
            "token_commands": monitor.token_commands, "round_trips": monitor.round_trips,
            "exit_codes": codes,
            "unauthorized": stats["unauthorized"], "issued": stats["issuedTotal"]}


async def _loop_vus(mode: str, url: str, redis_url: str, run: str, vus: int, seconds: float,
                    think: float) -> int:
    """The same aiohttp VU loop for both sides: `recipe` GETs the token from Redis before every
    request, `cache` reads kubeload's TokenCache (in memory, pushed by pub/sub)."""
    import aiohttp
    import redis.asyncio as aioredis

    from kubeload.protocol import RunKeys
    from kubeload.worker.token import TokenCache

    client = aioredis.Redis.from_url(redis_url, password=PASSWORD, max_connections=vus)
    cache = None
    if mode == "cache":
        cache = TokenCache(lambda: aioredis.Redis.from_url(redis_url, password=PASSWORD),
                           RunKeys(*run.split("/")), "Authorization", f"bench-{os.getpid()}")
        await cache.start()
        await cache.wait_ready(20)
    done = 0
    deadline = time.monotonic() + seconds

    async def vu(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            if cache is None:
                token = await client.get(RECIPE_KEY)  # the recipe: one GET per request
                headers = {"Authorization": f"Bearer {token.decode()}"}
            else:
                name, value = cache.header or ("Authorization", "")
                headers = {name: value}
            async with session.get(url + "/api/items", headers=headers) as response:
                await response.read()
            done += 1
            if think:
                await asyncio.sleep(think)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(vu(session) for _ in range(vus)))
    if cache is not None:
        await cache.close()
    await client.aclose()
    return done


RECIPE_KEY = "recipe:token"


def _loop_child(argv: list[str]) -> None:
    mode, url, redis_url, run, vus, seconds, think = argv
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(asyncio.run(_loop_vus(mode, url, redis_url, run, int(vus), float(seconds), float(think))))


def run_loop(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """`args.workers * args.processes` aiohttp VU processes in `mode` (recipe or cache)."""
    import urllib.parse
    import urllib.request

    from kubeload.api.durations import parse_duration

    run = f"bench/{mode}/{uuid.uuid4().hex[:8]}"
    # Tokens living an hour: this comparison is about reading the token, not refreshing it.
    with bench_redis(core=None) as server, demo_target("1h") as url:
        refresher = None
        if mode == "recipe":
            # The recipe's token-manager, once: the run is shorter than the token's life.
            form = urllib.parse.urlencode({"grant_type": "client_credentials",
                                           "client_id": "demo-client",
                                           "client_secret": "demo-secret"}).encode()
            with urllib.request.urlopen(url + "/oauth/token", data=form, timeout=10) as response:
                token = json.loads(response.read())
            server.client().set(RECIPE_KEY, token["access_token"], ex=3600)
        else:
            refresher = _start_refresher(server, url, run)
        before = commandstats(server)
        processes = args.workers * args.processes
        think = parse_duration(args.think_time)
        children = [subprocess.Popen(
            [sys.executable, __file__, "--loop-child", mode, url, server.url, run,
             str(args.vus // processes + (i < args.vus % processes)), str(args.seconds), str(think)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for i in range(processes)]
        requests = sum(int(c.communicate(timeout=args.seconds + 60)[0] or 0) for c in children)
        after = commandstats(server)
        stats = _http_json(url + "/_control/stats")
        if refresher is not None:
            refresher.terminate()
            refresher.wait(15)
    return {"requests": requests, "commands": _delta(before, after),
            "unauthorized": stats["unauthorized"]}


def _start_refresher(server: BenchRedis, url: str, run: str, spec: dict[str, Any] | None = None
                     ) -> subprocess.Popen[bytes]:
    import urllib.request

    auth = _client_credentials(url)
    spec_file = Path(tempfile.mkdtemp()) / "spec.json"
    spec_file.write_text(json.dumps({"spec": spec or {"auth": auth}}))
    probe = free_port()
    refresher = subprocess.Popen(
        [KUBELOAD, "refresher", "--redis-url", server.url, "--run", run, "--spec-file",
         str(spec_file), "--probe-host", "127.0.0.1", "--probe-port", str(probe)],
        env=dict(os.environ, KUBELOAD_REDIS_PASSWORD=PASSWORD), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{probe}/readyz", timeout=2).close()
            return refresher
        except OSError:
            time.sleep(0.1)
    refresher.terminate()
    raise SystemExit("the refresher did not become ready")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--loop-child":
        _loop_child(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--vus", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--think-time", default="0s")
    parser.add_argument("--token-lifetime", default="2s")
    parser.add_argument("--skip-recipe", action="store_true",
                        help="only the kubeload worker fleet (skip the same-loop comparison)")
    args = parser.parse_args()

    print(f"{args.workers} workers x {args.processes} processes, {args.vus} VUs, {args.seconds} s, "
          f"think time {args.think_time}, tokens living {args.token_lifetime}", flush=True)
    ours = run_kubeload(args)
    ratio = sum(ours["commands"].values()) / max(ours["requests"], 1)
    token_ratio = sum(ours["token_commands"].values()) / max(ours["requests"], 1)
    print(f"\nkubeload: {ours['requests']} requests, {sum(ours['commands'].values())} Redis commands "
          f"(INFO commandstats) -> {ratio:.5f} per request; token path only: "
          f"{sum(ours['token_commands'].values())} -> {token_ratio:.6f} per request")
    print(f"  tokens issued {ours['issued']}, 401s on the target {ours['unauthorized']}, "
          f"worker exit codes {ours['exit_codes']}")
    print("  by command: " + ", ".join(f"{k} {v}" for k, v in ours["commands"].most_common()))
    print("  by family (MONITOR): " + ", ".join(f"{k} {v}" for k, v in ours["families"].most_common()))
    print("  token path: " + ", ".join(f"{k} {v}" for k, v in ours["token_commands"].most_common())
          + "  (commands run inside the refresher's Lua scripts count, as in INFO commandstats)")
    trips = ours["round_trips"]
    print("  round trips (commands sent by clients): "
          + ", ".join(f"{k} {v}" for k, v in trips.most_common())
          + f" -> token path {trips['token'] / max(ours['requests'], 1):.6f} per request")
    if not args.skip_recipe:
        # Side by side with the same aiohttp VU loop: the cost of getting the token.
        same = {mode: run_loop(args, mode) for mode in ("cache", "recipe")}
        print(f"\nsame aiohttp VU loop ({args.workers * args.processes} processes):")
        for mode, result in same.items():
            per = sum(result["commands"].values()) / max(result["requests"], 1)
            label = "TokenCache (kubeload)" if mode == "cache" else "GET before every request (recipe)"
            print(f"  {label:36} {result['requests']:>8} requests "
                  f"({result['requests'] / args.seconds:,.0f}/s), {sum(result['commands'].values()):>7} "
                  f"Redis commands -> {per:.5f} per request")
        recipe_ratio = sum(same["recipe"]["commands"].values()) / max(same["recipe"]["requests"], 1)
        print(f"\nkubeload worker fleet / recipe: {ratio / recipe_ratio:.5f} of the recipe's Redis "
              f"traffic per request (token path: {token_ratio / recipe_ratio:.6f})")
    verdict = "below" if token_ratio < 0.001 else "ABOVE"
    print(f"goal: token-path commands per request below 0.001: {token_ratio:.6f} ({verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
