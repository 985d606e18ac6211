"""`kubeload operator`: run the Kubernetes operator (kopf), standalone, JSON logs.

Flags (each also from the environment, for the chart's Deployment):

  --namespace NS (repeat; env KUBELOAD_NAMESPACES, comma separated)  default: all namespaces
  --worker-image, --redis-image        images of the pods it creates
  --image-pull-policy P                pull policy of those pods (env KUBELOAD_IMAGE_PULL_POLICY)
  --default-worker-resources JSON      worker resources when a LoadTest sets none
                                       (env KUBELOAD_DEFAULT_WORKER_RESOURCES)
  --interval S                         seconds between reconciles of one LoadTest (status pace)
  --start-delay S, --pod-start-lead S  plan start ahead of writing it; parallelism raised ahead
  --service-map FILE                   `host:port` -> `host:port` for Redis (tests, port-forwards)
  --liveness URL                       kopf's liveness endpoint, e.g. http://0.0.0.0:8080/healthz
  --metrics-port N                     Prometheus /metrics (0: off)
  --log-format json|plain
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from .settings import OperatorSettings

__all__ = ["register"]


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _resources(text: str) -> dict[str, dict[str, str]]:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict) or not set(value) <= {"limits", "requests"}:
        raise argparse.ArgumentTypeError('expected {"limits": {...}, "requests": {...}}')
    return {k: {str(r): str(q) for r, q in v.items()} for k, v in value.items()}


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("operator", help="run the Kubernetes operator")
    namespaces = [n for n in os.environ.get("KUBELOAD_NAMESPACES", "").split(",") if n]
    parser.add_argument("--namespace", action="append", default=namespaces or None,
                        help="watch this namespace (repeatable; default: all namespaces)")
    parser.add_argument("--worker-image", default=os.environ.get("KUBELOAD_WORKER_IMAGE"))
    parser.add_argument("--redis-image", default=os.environ.get("KUBELOAD_REDIS_IMAGE"))
    parser.add_argument("--image-pull-policy", choices=("Always", "IfNotPresent", "Never"),
                        default=os.environ.get("KUBELOAD_IMAGE_PULL_POLICY") or None)
    parser.add_argument("--default-worker-resources", type=_resources, metavar="JSON",
                        default=os.environ.get("KUBELOAD_DEFAULT_WORKER_RESOURCES") or None,
                        help='e.g. {"limits": {"cpu": "1", "memory": "1Gi"}}')
    defaults = OperatorSettings()
    parser.add_argument("--interval", type=float,
                        default=_env_float("KUBELOAD_RECONCILE_INTERVAL", defaults.reconcile_interval))
    parser.add_argument("--start-delay", type=float,
                        default=_env_float("KUBELOAD_START_DELAY", defaults.start_delay))
    parser.add_argument("--pod-start-lead", type=float,
                        default=_env_float("KUBELOAD_POD_START_LEAD", defaults.pod_start_lead))
    parser.add_argument("--service-map", default=os.environ.get("KUBELOAD_SERVICE_MAP"))
    parser.add_argument("--liveness", default=os.environ.get("KUBELOAD_LIVENESS"))
    parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("KUBELOAD_METRICS_PORT", "0")))
    parser.add_argument("--log-format", choices=("json", "plain"),
                        default=os.environ.get("KUBELOAD_LOG_FORMAT", "json"))
    parser.add_argument("--verbose", action="store_true")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    import kopf

    from .. import observability
    from .handlers import build_registry

    settings = OperatorSettings()
    overrides: dict[str, Any] = {
        "reconcile_interval": args.interval,
        "start_delay": args.start_delay,
        "pod_start_lead": args.pod_start_lead,
    }
    if args.worker_image:
        overrides["worker_image"] = args.worker_image
    if args.redis_image:
        overrides["redis_image"] = args.redis_image
    if args.image_pull_policy:
        overrides["image_pull_policy"] = args.image_pull_policy
    if args.default_worker_resources:
        # argparse applies `type` to string defaults too, so this is the parsed dict either way.
        overrides["worker_resources"] = args.default_worker_resources
    settings = dataclasses.replace(settings, **overrides)
    kopf.configure(verbose=args.verbose,
                   log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN)
    metrics = None
    if args.metrics_port:
        registry = observability.new_registry("operator")
        metrics = observability.OperatorMetrics(registry)
        observability.serve(registry, args.metrics_port)
    kopf.run(
        registry=build_registry(settings, args.service_map, metrics, verbose=args.verbose,
                                namespaced=bool(args.namespace)),
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
    )
    return 0
