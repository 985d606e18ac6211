"""`kubeload demo-target`: command-line entry point."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("demo-target", help="serve the demo API on loopback")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    print("kubeload demo-target: not implemented yet in this version", file=sys.stderr)
    return 1
