"""A child process of `kubeload run`: its record, its log's tail, how its exit reads."""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Child", "exit_text"]

LOG_TAIL_CHARS = 2000


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return text[-LOG_TAIL_CHARS:].strip()


def exit_text(code: int) -> str:
    """`code 1`, or `code -9 (SIGKILL)` for a process ended by a signal."""
    if code >= 0:
        return f"code {code}"
    try:
        return f"code {code} ({signal.Signals(-code).name})"
    except ValueError:
        return f"code {code}"
