"""Settings every kubeload process (worker, refresher) takes from flags or the environment.

Pods get them as environment variables from the operator; the local runner passes flags.
The Redis password travels separately from the URL so it never shows up in a logged URL.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from typing import Any

from .protocol import RunKeys

__all__ = ["RuntimeConfig", "add_runtime_arguments"]

ENV_REDIS_URL = "KUBELOAD_REDIS_URL"
ENV_REDIS_PASSWORD = "KUBELOAD_REDIS_PASSWORD"
ENV_RUN = "KUBELOAD_RUN"
ENV_SPEC = "KUBELOAD_SPEC"


@dataclass(frozen=True)
class RuntimeConfig:
    redis_url: str
    redis_password: str | None
    keys: RunKeys
    spec: dict[str, Any] | None  # the LoadTest spec on the wire, when given

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RuntimeConfig:
        run = args.run or ""
        parts = run.split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"--run / {ENV_RUN} must be NAMESPACE/NAME/RUN_ID, got {run!r}")
        if not args.redis_url:
            raise ValueError(f"--redis-url / {ENV_REDIS_URL} is required")
        spec: dict[str, Any] | None = None
        if args.spec_file:
            with open(args.spec_file, encoding="utf-8") as handle:
                import yaml

                document = yaml.safe_load(handle)
            spec = document.get("spec", document) if isinstance(document, dict) else None
        elif os.environ.get(ENV_SPEC):
            spec = json.loads(os.environ[ENV_SPEC])
        return cls(
            redis_url=args.redis_url,
            redis_password=os.environ.get(ENV_REDIS_PASSWORD) or None,
            keys=RunKeys(*parts),
            spec=spec,
        )


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", default=os.environ.get(ENV_REDIS_URL),
                        help=f"Redis URL without password (env {ENV_REDIS_URL}); "
                        f"the password comes from {ENV_REDIS_PASSWORD}")
    parser.add_argument("--run", default=os.environ.get(ENV_RUN),
                        help=f"NAMESPACE/NAME/RUN_ID of the run (env {ENV_RUN})")
    parser.add_argument("--spec-file", default=None,
                        help=f"LoadTest manifest or spec file (else JSON in env {ENV_SPEC})")
