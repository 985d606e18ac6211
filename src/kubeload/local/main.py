"""`kubeload run FILE`: run a LoadTest manifest on this machine."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "run", help="run a LoadTest manifest on this machine",
        description="Run a LoadTest on this machine: an embedded redis-server, the token refresher "
        "(when spec.auth is set) and worker processes. Exit 0 passed, 99 thresholds failed, "
        "2 invalid manifest or options, 1 other failure, 130 interrupted.")
    parser.add_argument("file", metavar="FILE", help="the LoadTest manifest (YAML)")
    parser.add_argument("--redis-url", help="use this Redis instead of an embedded redis-server "
                        "(password from KUBELOAD_REDIS_PASSWORD)")
    parser.add_argument("--workers", type=_positive_int,
                        help="worker processes groups (default: what the spec needs, at most one per CPU)")
    parser.add_argument("--processes", type=_positive_int,
                        help="processes per worker (default: spec.workers.processesPerWorker)")
    parser.add_argument("--summary-export", type=Path, metavar="PATH",
                        help="write the end-of-test summary as JSON (k6's summary-export shape)")
    parser.add_argument("--out", type=Path, metavar="REPORT.html", help="write a self-contained HTML report")
    live = parser.add_mutually_exclusive_group()
    live.add_argument("--live", dest="live", action="store_true", default=None,
                      help="live progress panel (default when stdout is a terminal)")
    live.add_argument("--plain", dest="live", action="store_false", help="plain progress lines every 5 s")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..api.manifest import ManifestError, load_manifest
    from ..credentials import CredentialError
    from .embedded_redis import RedisUnavailableError
    from .runner import LocalRun, RunError, RunOptions

    try:
        test = load_manifest(Path(args.file))
    except ManifestError as exc:
        print(f"{args.file}: invalid", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 2
    for path in (args.summary_export, args.out):
        if path is not None and not path.parent.exists():
            print(f"kubeload run: directory {path.parent} does not exist", file=sys.stderr)
            return 2
    options = RunOptions(redis_url=args.redis_url, workers=args.workers, processes=args.processes,
                         summary_export=args.summary_export, report=args.out, live=args.live)
    try:
        return asyncio.run(LocalRun(test, options).run())
    except (RunError, RedisUnavailableError, CredentialError) as exc:
        print(f"kubeload run: {exc}", file=sys.stderr)
        return 1
