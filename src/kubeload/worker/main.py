"""`kubeload worker`: command-line entry point."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("worker", help="run one worker (the VU processes of one pod)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    print("kubeload worker: not implemented yet in this version", file=sys.stderr)
    return 1
