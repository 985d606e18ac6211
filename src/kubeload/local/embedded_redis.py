"""An embedded `redis-server` for local runs: free loopback port, generated password, no disk."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EmbeddedRedis", "RedisUnavailableError", "free_port"]

INSTALL_HINT = (
    "kubeload run needs redis-server: run `make setup` (installs it from Debian), "
    "`apt-get install redis-server`, or pass --redis-url redis://HOST:PORT/0 to use an existing Redis"
)


class RedisUnavailableError(RuntimeError):
    """redis-server cannot be found or started; the message says what to do."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedRedis:
    """Start with `start()`, always `stop()` (the runner does it in a finally block)."""

    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    port: int = 0
    env: dict[str, str] | None = None  # the runner tags the process with its run, to be found by it
    _proc: subprocess.Popen[bytes] | None = None
    _dir: Path | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server") or next(
            (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if Path(p).exists()), None
        )
        if binary is None:
            raise RedisUnavailableError(f"redis-server not found. {INSTALL_HINT}")
        self.port = self.port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="kubeload-redis-"))
        config = self._dir / "redis.conf"
        # The password goes into a private config file, not argv, so `ps` does not show it.
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\nrequirepass {self.password}\nsave \"\"\n"
            f"appendonly no\ndir {self._dir}\nprotected-mode yes\n"
        )
        config.chmod(0o600)
        self._proc = subprocess.Popen(
            [binary, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
            env=self.env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                detail = (self._proc.stderr.read() if self._proc.stderr else b"").decode(errors="replace")
                self.stop()
                raise RedisUnavailableError(f"redis-server exited at start: {detail.strip()[-300:]}. {INSTALL_HINT}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RedisUnavailableError(f"redis-server did not listen on 127.0.0.1:{self.port} within {timeout:g}s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
