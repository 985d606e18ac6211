"""`kubeload worker`: command-line entry point of one worker (the VU processes of one pod).

Exit codes: 0 the plan ran (or was stopped) cleanly, 1 an error, 2 bad options or spec.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from typing import Any

__all__ = ["register"]

ENV_INDEX = "JOB_COMPLETION_INDEX"  # set by Kubernetes for each pod of an Indexed Job
ENV_PROCESSES = "KUBELOAD_PROCESSES"
ENV_ENGINE = "KUBELOAD_ENGINE"
ENV_WORKER_ID = "KUBELOAD_WORKER_ID"


def register(sub: Any) -> None:
    from ..runtime import add_runtime_arguments
    from .engine import DEFAULT_ENGINE, ENGINES

    parser: argparse.ArgumentParser = sub.add_parser(
        "worker", help="run one worker (the VU processes of one pod)",
        description="Run this worker's share of the run's plan (read from Redis) until its end or a stop.")
    add_runtime_arguments(parser)
    parser.add_argument("--index", default=os.environ.get(ENV_INDEX, "0"),
                        help=f"this worker's index among the plan's workers (env {ENV_INDEX}, default 0)")
    parser.add_argument("--processes", default=os.environ.get(ENV_PROCESSES),
                        help="VU processes (event loops) to run; 0 = one per CPU "
                        f"(env {ENV_PROCESSES}; default: the spec's workers.processesPerWorker)")
    parser.add_argument("--id", dest="worker_id", default=os.environ.get(ENV_WORKER_ID),
                        help=f"name in metrics and heartbeats (env {ENV_WORKER_ID}; default the host name)")
    parser.add_argument("--engine", default=os.environ.get(ENV_ENGINE, DEFAULT_ENGINE), choices=ENGINES,
                        help=f"HTTP engine (env {ENV_ENGINE}, default {DEFAULT_ENGINE})")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus /metrics on this port (all addresses); the VU processes "
                        "use the next ports on loopback (env KUBELOAD_METRICS_PORT; default 0 = off)")
    parser.set_defaults(handler=_run)


def _non_negative_int(text: str, flag: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{flag} must be 0 or more, got {value}")
    return value


def _run(args: argparse.Namespace) -> int:
    from ..runtime import RuntimeConfig
    from .process import EXIT_BAD_OPTIONS
    from .supervisor import WorkerOptions, supervise

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    try:
        config = RuntimeConfig.from_args(args)
        index = _non_negative_int(str(args.index), "--index")
        processes = None if args.processes in (None, "") else _non_negative_int(str(args.processes), "--processes")
        metrics_port = _metrics_port(args.metrics_port)
    except ValueError as error:
        print(f"kubeload worker: {error}", file=sys.stderr)
        return EXIT_BAD_OPTIONS
    worker_id = args.worker_id or f"{socket.gethostname()}-{index}"
    return supervise(config, WorkerOptions(index=index, worker_id=worker_id, processes=processes,
                                           engine=args.engine, metrics_port=metrics_port))


def _metrics_port(flag: int | None) -> int:
    from ..observability import metrics_port

    if flag is None:
        return metrics_port(default=0)  # off unless asked for (the operator's pods set the env)
    if not 0 <= flag <= 65535:
        raise ValueError(f"--metrics-port must be a port number (0 disables), got {flag}")
    return flag
