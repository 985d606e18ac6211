"""The two HTTP engines side by side: pyreqwest vs aiohttp, bare and inside the worker.

    .venv/bin/python bench/engines.py [--seconds 6] [--users 50]

nginx (`return 200`) runs pinned to core 0. On core 1, for each engine:

- "bare": 50 coroutines calling `engine.send()` in a loop under uvloop, nothing else: the
  engine's own cost per request;
- "worker": a real `kubeload worker` process (constant-vus, 50 VUs) with everything a VU does
  per request (weighted pick, timing, HdrHistogram record, counters) and metrics to Redis.

The default engine (`kubeload.worker.engine.DEFAULT_ENGINE`) is the faster one here.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import bench_redis, run_worker
from nginx_target import nginx, pinned

TARGET_CORE = 0
CLIENT_CORE = 1


async def _bare(engine_name: str, url: str, seconds: float, users: int) -> float:
    from kubeload.worker.engine import EngineConfig, make_engine

    engine = make_engine(engine_name, EngineConfig())
    count = 0
    deadline = time.perf_counter() + seconds
    headers: dict[str, str] = {}

    async def user() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            status, _, _, failure = await engine.send("GET", url, headers, None)
            if failure or status != 200:
                raise RuntimeError(f"request failed: {status} {failure}")
            count += 1

    await asyncio.gather(*(user() for _ in range(users)))
    await engine.close()
    return count / seconds


def bare_child(engine_name: str, url: str, seconds: float, users: int) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        print(runner.run(_bare(engine_name, url, seconds, users)))


def run_bare(engine_name: str, url: str, seconds: float, users: int) -> float:
    argv = [sys.executable, __file__, "--bare-child", engine_name, url, str(seconds), str(users)]
    out = subprocess.run(pinned(CLIENT_CORE, argv), capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout
    return float(out.strip().splitlines()[-1])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--bare-child":
        bare_child(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--users", type=int, default=50)
    args = parser.parse_args()
    rows = []
    with nginx(core=TARGET_CORE) as url, bench_redis(core=TARGET_CORE) as redis:
        print(f"target: nginx on core {TARGET_CORE}; clients on core {CLIENT_CORE}, {args.users} users, "
              f"{args.seconds:g} s each")
        for engine in ("pyreqwest", "aiohttp"):
            bare = run_bare(engine, url + "/", args.seconds, args.users)
            worker = run_worker(redis, url, core=CLIENT_CORE, seconds=args.seconds, vus=args.users, engine=engine)
            rows.append((engine, bare, worker.rps, worker.p50_ms, worker.p99_ms))
            print(f"  {engine:<10} bare {bare:>9,.0f} req/s   worker {worker.rps:>9,.0f} req/s "
                  f"(p50 {worker.p50_ms:.2f} ms, p99 {worker.p99_ms:.2f} ms)")
    (_, py_bare, py_worker, _, _), (_, aio_bare, aio_worker, _, _) = rows
    print(f"pyreqwest / aiohttp: bare {py_bare / aio_bare:.2f}x, worker {py_worker / aio_worker:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
