"""A fast HTTP target for the benches: Debian's nginx answering `return 200` on loopback.

It runs with its own temporary configuration (no root, no system files written), keep-alive
on, one worker process pinned to one core with `taskset`, and is stopped by the context manager.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["free_port", "nginx", "pinned"]

_CONFIG = """
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log crit;
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: int | None, argv: list[str]) -> list[str]:
    """`argv` prefixed with `taskset -c core` when a core is given and taskset exists."""
    if core is None or shutil.which("taskset") is None:
        return argv
    return ["taskset", "-c", str(core), *argv]


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nginx did not listen on 127.0.0.1:{port}")


@contextmanager
def nginx(core: int | None = 0) -> Iterator[str]:
    """Run nginx on a free loopback port; yields its base URL."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    directory = Path(tempfile.mkdtemp(prefix="kubeload-bench-nginx-"))
    port = free_port()
    config = directory / "nginx.conf"
    config.write_text(_CONFIG.format(dir=directory, port=port))
    proc = subprocess.Popen(pinned(core, [binary, "-c", str(config), "-p", str(directory)]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(directory, ignore_errors=True)
