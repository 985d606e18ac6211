"""`kubeload operator`: command-line entry point."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("operator", help="run the Kubernetes operator")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    print("kubeload operator: not implemented yet in this version", file=sys.stderr)
    return 1
