"""The `kubeload` command line.

Exit codes: 0 success (test passed), 99 thresholds failed (k6's code), 2 invalid manifest or
options, 1 any other failure. Subcommands import their modules lazily so `kubeload validate`
stays fast and needs no Redis or Kubernetes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__

__all__ = ["EXIT_FAILED", "EXIT_INVALID", "EXIT_OK", "EXIT_THRESHOLDS", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_THRESHOLDS = 99

Handler = Callable[[argparse.Namespace], int]


def _cmd_validate(args: argparse.Namespace) -> int:
    from .api.manifest import ManifestError, load_manifests

    status = EXIT_OK
    for path in args.files:
        try:
            tests = load_manifests(Path(path))
        except ManifestError as exc:
            status = EXIT_INVALID
            print(f"{path}: invalid", file=sys.stderr)
            for error in exc.errors:
                print(f"  {error}", file=sys.stderr)
            continue
        names = ", ".join(t.metadata.name for t in tests)
        print(f"{path}: valid ({names})")
    return status


def _cmd_crd(args: argparse.Namespace) -> int:
    from .api.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return EXIT_OK


def _cmd_docs(args: argparse.Namespace) -> int:
    from .api.reference import spec_reference

    sys.stdout.write(spec_reference())
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubeload",
        description="Kubernetes-native load tests with one shared, centrally refreshed auth token.",
    )
    parser.add_argument("--version", action="version", version=f"kubeload {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = sub.add_parser("validate", help="check LoadTest manifests; exit 2 on invalid input")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(handler=_cmd_validate)

    crd = sub.add_parser("crd", help="print the LoadTest CustomResourceDefinition")
    crd.set_defaults(handler=_cmd_crd)

    docs = sub.add_parser("docs", help="print the spec reference (markdown) generated from the API")
    docs.set_defaults(handler=_cmd_docs)

    # Each component registers its own subcommands; imports stay light until a command runs.
    from .local import demo_main
    from .local import main as local_main
    from .operator import main as operator_main
    from .refresher import main as refresher_main
    from .worker import main as worker_main

    for module in (local_main, operator_main, worker_main, refresher_main, demo_main):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
