"""kubeload's worker vs wrk vs Locust FastHttpUser, side by side, one core each.

    make bench-engine          # or: .venv/bin/python bench/engine.py [--seconds 8] [--users 50]

nginx (`return 200`, keep-alive) runs pinned to core 0; each client in turn runs pinned to
core 1 for the same duration with the same number of concurrent users and no think time:

- wrk, 1 thread, `--users` connections (the ceiling: a C event loop);
- Locust FastHttpUser, headless, `--users` users, `wait_time = constant(0)`;
- kubeload's real `kubeload worker` process: constant-vus, `--users` VUs, one process,
  reading its plan from Redis and publishing its metrics there as in a pod.

It prints requests/s of each and the ratios kubeload/locust and kubeload/wrk.
Goals: kubeload >= 4x Locust FastHttpUser per core and >= 20 % of wrk.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import bench_redis, run_worker, venv_bin
from nginx_target import nginx, pinned

TARGET_CORE = 0
CLIENT_CORE = 1

LOCUSTFILE = textwrap.dedent("""
    from locust import FastHttpUser, constant, task

    class Bench(FastHttpUser):
        wait_time = constant(0)

        @task
        def root(self):
            self.client.get("/")
""")


def run_wrk(url: str, seconds: float, users: int) -> float:
    out = subprocess.run(pinned(CLIENT_CORE, ["wrk", "-t1", f"-c{users}", f"-d{seconds:g}s", url + "/"]),
                         capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return float(match.group(1))


def run_locust(url: str, seconds: float, users: int) -> float:
    with tempfile.TemporaryDirectory(prefix="kubeload-bench-locust-") as directory:
        locustfile = Path(directory) / "locustfile.py"
        locustfile.write_text(LOCUSTFILE)
        prefix = str(Path(directory) / "out")
        argv = [venv_bin("locust"), "-f", str(locustfile), "--headless", "-u", str(users), "-r", str(users),
                "--run-time", f"{int(seconds)}s", "--host", url, "--csv", prefix, "--only-summary",
                "--loglevel", "ERROR", "--stop-timeout", "1"]
        subprocess.run(pinned(CLIENT_CORE, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=seconds + 60, check=False, env=dict(os.environ, PYTHONWARNINGS="ignore"))
        with open(prefix + "_stats.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                if row["Name"] == "Aggregated":
                    # Locust's own average over the run: requests / run time.
                    return float(row["Requests/s"])
    raise RuntimeError("no Aggregated row in Locust's stats")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each client's run (default 8)")
    parser.add_argument("--users", type=int, default=50, help="concurrent users/connections/VUs (default 50)")
    parser.add_argument("--engine", default="pyreqwest", help="kubeload HTTP engine (default pyreqwest)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the three clients this many times, interleaved, and keep each one's best "
                        "(a noisy shared machine only ever slows a client down)")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        print("warning: fewer than 2 CPUs: target and client share a core", file=sys.stderr)

    results: dict[str, float] = {"wrk": 0.0, "locust": 0.0, "kubeload": 0.0}
    exit_codes = []
    with nginx(core=TARGET_CORE) as url, bench_redis(core=TARGET_CORE) as redis:
        print(f"target: nginx on core {TARGET_CORE} at {url}; clients on core {CLIENT_CORE}, "
              f"{args.users} users, {args.seconds:g} s each")
        for round_ in range(1, args.rounds + 1):
            if args.rounds > 1:
                print(f"round {round_}/{args.rounds}")
            wrk = run_wrk(url, args.seconds, args.users)
            print(f"  wrk (1 thread, {args.users} connections): {wrk:>10,.0f} req/s")
            locust = run_locust(url, args.seconds, args.users)
            print(f"  Locust FastHttpUser ({args.users} users):  {locust:>10,.0f} req/s")
            worker = run_worker(redis, url, core=CLIENT_CORE, seconds=args.seconds, vus=args.users,
                                engine=args.engine)
            print(f"  kubeload worker ({args.users} VUs, {args.engine}): {worker.rps:>10,.0f} req/s "
                  f"(p50 {worker.p50_ms:.2f} ms, p99 {worker.p99_ms:.2f} ms, failed {worker.failed}, "
                  f"exit {worker.exit_code})")
            exit_codes.append(worker.exit_code)
            for name, value in (("wrk", wrk), ("locust", locust), ("kubeload", worker.rps)):
                results[name] = max(results[name], value)
    if args.rounds > 1:
        print(f"best of {args.rounds}: wrk {results['wrk']:,.0f}, locust {results['locust']:,.0f}, "
              f"kubeload {results['kubeload']:,.0f} req/s")

    vs_locust = results["kubeload"] / results["locust"] if results["locust"] else float("inf")
    vs_wrk = results["kubeload"] / results["wrk"] if results["wrk"] else 0.0
    print(f"kubeload / locust = {vs_locust:.2f}x  (goal >= 4x)")
    print(f"kubeload / wrk    = {vs_wrk:.1%}  (goal >= 20 %)")
    return 0 if all(code == 0 for code in exit_codes) else 1


if __name__ == "__main__":
    sys.exit(main())
