"""`kubeload refresher`: obtain the shared token, keep it fresh in Redis.

Exit codes: 0 stopped by SIGTERM/SIGINT, 1 the first token could not be obtained (bad
settings: the message names the field and the HTTP status) or a credential is missing,
2 invalid settings (no `auth` in the spec, invalid flags).
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

__all__ = ["register"]

log = logging.getLogger("kubeload.refresher")

ENV_PROBE_HOST = "KUBELOAD_PROBE_HOST"
ENV_PROBE_PORT = "KUBELOAD_PROBE_PORT"
ENV_HOLDER = "KUBELOAD_REFRESHER_ID"


def register(sub: Any) -> None:
    from ..runtime import add_runtime_arguments

    parser: argparse.ArgumentParser = sub.add_parser(
        "refresher", help="run the token refresher (one shared token for every VU)",
        description="Obtain the token with spec.auth, write it to Redis, publish each version, "
        "refresh before expiry; two replicas share the work through a Redis lease.")
    add_runtime_arguments(parser)
    parser.add_argument("--probe-host", default=os.environ.get(ENV_PROBE_HOST, "0.0.0.0"),  # noqa: S104 - kubelet probes come from outside the pod
                        help=f"address of /healthz and /readyz (env {ENV_PROBE_HOST})")
    parser.add_argument("--probe-port", type=int,
                        default=int(os.environ.get(ENV_PROBE_PORT, "8081")),
                        help=f"port of /healthz and /readyz; 0 picks a free one (env {ENV_PROBE_PORT})")
    parser.add_argument("--holder-id", default=os.environ.get(ENV_HOLDER),
                        help="identity in the lease and in stats (default: host name and pid)")
    parser.add_argument("--lease-ttl", default="10s",
                        help="lease period; a standby takes over within it when the holder dies")
    parser.add_argument("--first-token-attempts", type=int, default=5,
                        help="tries for the first token before exiting 1 (permanent errors such "
                        "as HTTP 401 end at once)")
    parser.add_argument("--backoff-base", default="500ms", help="first retry delay after a failure")
    parser.add_argument("--backoff-max", default="30s", help="longest retry delay")
    parser.add_argument("--min-forced-interval", default="1s",
                        help="least time between two forced refreshes (a target that always "
                        "answers 401 must not make a token loop)")
    parser.add_argument("--request-timeout", default="10s", help="timeout of a token request")
    parser.add_argument("--log-level", default=os.environ.get("KUBELOAD_LOG_LEVEL", "info"),
                        choices=["debug", "info", "warning", "error"])
    parser.set_defaults(handler=_run)


class _RedactingFilter(logging.Filter):
    """Every log record, ours or a library's, passes through the redactor."""

    def __init__(self, redact: Any) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redact(record.getMessage())
        record.args = None
        if record.exc_info:
            # Tracebacks may quote locals or URLs; keep the type only.
            record.msg = f"{record.msg} ({record.exc_info[0].__name__ if record.exc_info[0] else ''})"
            record.exc_info = None
            record.exc_text = None
        return True


def _fail(message: str, code: int) -> int:
    print(f"kubeload refresher: {message}", file=sys.stderr, flush=True)
    return code


def _run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ..api.durations import parse_duration
    from ..api.models import Auth
    from ..credentials import CredentialError, resolve_credential
    from ..runtime import RuntimeConfig
    from .errors import RefresherError
    from .redact import Redactor
    from .schedule import Backoff, parse_refresh_before
    from .service import RefresherConfig

    try:
        runtime = RuntimeConfig.from_args(args)
        lease_ttl = parse_duration(args.lease_ttl)
        backoff = Backoff(base=parse_duration(args.backoff_base), cap=parse_duration(args.backoff_max))
        min_forced = parse_duration(args.min_forced_interval)
        request_timeout = parse_duration(args.request_timeout)
    except (ValueError, OSError) as exc:
        return _fail(str(exc), 2)
    if args.first_token_attempts < 1:
        return _fail("--first-token-attempts must be at least 1", 2)
    if runtime.spec is None or not runtime.spec.get("auth"):
        return _fail("the spec has no auth section: there is no token to refresh", 2)
    try:
        auth = Auth.model_validate(runtime.spec["auth"])
    except ValidationError as exc:
        # pydantic echoes input values; a credential `value` could be one, so show locations
        # and messages only.
        problems = "; ".join(
            f"auth.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return _fail(f"invalid auth settings: {problems}", 2)
    try:
        credentials = {name: resolve_credential(name, cred) for name, cred in auth.credentials().items()}
    except CredentialError as exc:
        return _fail(str(exc), 1)
    redactor = Redactor(credentials.values())
    _setup_logging(args.log_level, redactor)
    # `kill -USR1 <pid>` dumps every thread's stack to stderr (a stuck process, in the field).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    config = RefresherConfig(
        refresh_before=parse_refresh_before(auth.refresh_before), scheme=auth.scheme,
        lease_ttl=lease_ttl, first_token_attempts=args.first_token_attempts, backoff=backoff,
        min_forced_interval=min_forced,
    )
    holder = args.holder_id or f"{socket.gethostname()}-{os.getpid()}"
    try:
        return asyncio.run(_serve(args, runtime, auth, credentials=credentials, redactor=redactor,
                                  config=config, holder=holder, request_timeout=request_timeout))
    except RefresherError as exc:
        return _fail(redactor(str(exc)), 1)


def _setup_logging(level: str, redactor: Any) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactingFilter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO; a `request` grant URL may carry a secret.
    for noisy in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def _serve(args: argparse.Namespace, runtime: Any, auth: Any, *, credentials: dict[str, str],
                 redactor: Any, config: Any, holder: str, request_timeout: float) -> int:
    import httpx
    import redis.asyncio as aioredis
    from prometheus_client import generate_latest
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from ..observability import RefresherMetrics, new_registry
    from .errors import FirstTokenError, SettingsError
    from .grants import TokenSource
    from .probe import ProbeServer
    from .service import Refresher
    from .store import Store

    def render(registry: Any) -> str:
        return generate_latest(registry).decode("utf-8")

    def redis_client(socket_timeout: float) -> aioredis.Redis:
        # Our loops own retrying and backoff; the client's own retries would stall them.
        return aioredis.Redis.from_url(
            runtime.redis_url, password=runtime.redis_password, socket_timeout=socket_timeout,
            socket_connect_timeout=2.0, retry=Retry(NoBackoff(), 1))

    client = redis_client(3.0)
    stream_client = redis_client(config.request_block + 5.0)
    http = httpx.AsyncClient(timeout=request_timeout, follow_redirects=False)
    store = Store(client, runtime.keys, holder)
    try:
        source = TokenSource(auth, credentials, redactor, http)
    except SettingsError:
        await http.aclose()
        raise  # `_run` prints it, redacted, and exits 1
    # /metrics on the probe port; `pod` is the holder id (the pod name in a cluster).
    registry = new_registry("refresher")
    metrics = RefresherMetrics(registry, loadtest=runtime.keys.name, pod=holder)
    refresher = Refresher(source, store, Store(stream_client, runtime.keys, holder), config=config,
                          redactor=redactor, metrics=metrics)

    async def ready() -> tuple[bool, str]:
        try:
            expires_at = await asyncio.wait_for(store.token_expires_at(), timeout=1.0)
        except Exception as exc:  # a probe must answer, whatever Redis does
            return False, f"redis unreachable ({type(exc).__name__})"
        if expires_at is None:
            return False, "no token in redis yet"
        left = expires_at - time.time()
        if left <= 0:
            return False, "the token in redis has expired"
        return True, f"token valid for {left:.1f}s"

    probe = ProbeServer(args.probe_host, args.probe_port, ready, metrics=lambda: render(registry))
    await probe.start()
    log.info("refresher %s starting (grant %s); probes on http://%s:%d/readyz",
             holder, auth.grant, args.probe_host, probe.port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    run = asyncio.create_task(refresher.run())
    stopping = asyncio.create_task(stop.wait())
    code = 0
    try:
        await asyncio.wait({run, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if run.done():
            try:
                run.result()
            except FirstTokenError as exc:
                code = _fail(redactor(str(exc)), 1)
        else:
            log.info("stopping: releasing the lease")
    finally:
        for task in (run, stopping):
            task.cancel()
        # Bounded: see service._cancel (a cancellation redis-py swallows must not hang exit).
        await asyncio.wait({run, stopping}, timeout=2.0)
        await refresher.release()
        await probe.close()
        await http.aclose()
        await client.aclose()
        await stream_client.aclose()
    return code
