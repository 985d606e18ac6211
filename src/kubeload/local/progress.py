"""Live progress of a local run: a rich panel on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

__all__ = ["Progress", "Snapshot"]

PLAIN_PERIOD_S = 5.0


@dataclass(frozen=True)
class Snapshot:
    """What the progress shows at one moment."""

    elapsed: float
    total: float
    stage_index: int
    stage_count: int
    stage_name: str
    stage_fraction: float
    vus: int
    target: int
    target_unit: str  # "VUs" or "it/s"
    rps: float
    error_rate: float
    p95_ms: float
    requests: int
    token_version: int | None
    token_age_s: float | None
    state: str  # "starting", "running", "stopping"

    def line(self) -> str:
        token = "" if self.token_version is None else (
            f" token v{self.token_version} age {self.token_age_s or 0:.0f}s")
        return (f"[{self.elapsed:5.1f}s/{self.total:.0f}s] {self.state} stage {self.stage_index}/{self.stage_count} "
                f"{self.stage_name} vus {self.vus} target {self.target} {self.target_unit} "
                f"rps {self.rps:.1f} errors {self.error_rate * 100:.2f}% p95 {self.p95_ms:.1f}ms "
                f"reqs {self.requests}{token}")


class Progress:
    """`update()` as often as you like; it redraws on a terminal and prints a line every 5 s else."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live_mode = self.stream.isatty() if live is None else live
        self._console = Console(file=self.stream, force_terminal=self.live_mode or None)
        self._live: Live | None = None
        self._last_plain = 0.0

    def message(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text)
        else:
            print(text, file=self.stream, flush=True)

    def update(self, snap: Snapshot) -> None:
        if not self.live_mode:
            now = time.monotonic()
            if now - self._last_plain >= PLAIN_PERIOD_S:
                self._last_plain = now
                print(snap.line(), file=self.stream, flush=True)
            return
        if self._live is None:
            self._live = Live(console=self._console, refresh_per_second=4, transient=False)
            self._live.start()
        self._live.update(self._render(snap))

    def close(self, snap: Snapshot | None = None) -> None:
        if self._live is not None:
            if snap is not None:
                self._live.update(self._render(snap))
            self._live.stop()
            self._live = None
        elif snap is not None:
            print(snap.line(), file=self.stream, flush=True)

    @staticmethod
    def _render(snap: Snapshot) -> Group:
        table = Table.grid(padding=(0, 2))
        table.add_row("stage", f"{snap.stage_index}/{snap.stage_count} {snap.stage_name}",
                      "elapsed", f"{snap.elapsed:.1f}s / {snap.total:.0f}s")
        table.add_row("VUs", f"{snap.vus} (target {snap.target} {snap.target_unit})",
                      "requests", f"{snap.requests}")
        table.add_row("RPS", f"{snap.rps:.1f}", "errors", f"{snap.error_rate * 100:.2f}%")
        table.add_row("p95", f"{snap.p95_ms:.1f} ms", "token",
                      "-" if snap.token_version is None else f"v{snap.token_version}, {snap.token_age_s or 0:.0f}s old")
        bar = ProgressBar(total=1.0, completed=min(max(snap.stage_fraction, 0.0), 1.0), width=50)
        return Group(Text(f"kubeload: {snap.state}", style="bold"), bar, table)
