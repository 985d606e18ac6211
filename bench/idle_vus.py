"""Memory of many mostly idle VUs: 10,000 VUs with 1 s think time in ONE worker process.

    .venv/bin/python bench/idle_vus.py [--vus 10000] [--seconds 12]

A real `kubeload worker` (one process) ramps to `--vus` VUs over the first third of the run,
then holds them; each VU sends a request to nginx (core 0) and thinks 1 s. The bench samples
the resident memory (RSS) of the VU process every 0.2 s from /proc and prints its peak, the
per-VU cost and the requests the VUs sent. Goal: 10,000 VUs under 200 MB.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import bench_redis, start_worker
from nginx_target import nginx

GOAL_MB = 200.0


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vus", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args()
    ramp = args.seconds / 3
    load = {"executor": "ramping-vus", "thinkTime": "1s", "gracefulStop": "3s", "gracefulRampDown": "3s",
            "stages": [{"duration": f"{ramp:g}s", "target": args.vus},
                       {"duration": f"{args.seconds - ramp:g}s", "target": args.vus}]}
    with nginx(core=0) as url, bench_redis(core=0) as redis:
        run = start_worker(redis, url, load, core=1, seconds=args.seconds, processes=1)
        peak = {"supervisor": 0.0, "vu process": 0.0}
        baseline = 0.0
        deadline = time.monotonic() + args.seconds + 60
        while run.proc.poll() is None and time.monotonic() < deadline:
            # `taskset` execs the worker, so the Popen pid is the supervisor's.
            peak["supervisor"] = max(peak["supervisor"], rss_mb(run.proc.pid))
            for child in children(run.proc.pid):
                current = rss_mb(child)
                if not baseline:
                    baseline = current  # before the plan starts: the process with no VU
                peak["vu process"] = max(peak["vu process"], current)
            time.sleep(0.2)
        result = run.result(run.wait(30))
    per_vu_kb = (peak["vu process"] - baseline) * 1024 / args.vus
    print(f"{args.vus:,} VUs, think time 1 s, one process: peak RSS {peak['vu process']:.1f} MB "
          f"(at start {baseline:.1f} MB, ~{per_vu_kb:.1f} KB per VU); supervisor {peak['supervisor']:.1f} MB")
    print(f"requests sent: {result.requests:,} ({result.failed:,} failed), p50 {result.p50_ms:.1f} ms, "
          f"exit {result.exit_code}")
    verdict = "OK" if peak["vu process"] < GOAL_MB else "OVER"
    print(f"goal: < {GOAL_MB:.0f} MB for the VU process: {verdict}")
    return 0 if verdict == "OK" and result.exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
