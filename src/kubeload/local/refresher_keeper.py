"""`kubeload run`'s refresher process, started again when it exits mid-run.

A refresher that exits mid-run is started again (as the cluster's Deployment would), after
0.5 s, 1 s, 2 s, 4 s, 8 s; past that the run goes on and the token expires (auth.onExpired).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import redis.asyncio as aioredis

from ..api.models import Auth
from ..protocol import RunKeys
from ..refresher.store import Store as RefresherStore
from .child import Child, exit_text

__all__ = ["REFRESHER_BACKOFF_MAX_S", "REFRESHER_BACKOFF_S", "REFRESHER_RESTARTS", "RefresherKeeper"]

REFRESHER_RESTARTS = 5
REFRESHER_BACKOFF_S = 0.5
REFRESHER_BACKOFF_MAX_S = 8.0


class RefresherKeeper:
    """Starts the run's refresher process, and starts it again when it exits mid-run.

    `spawn(name, args, env)` starts a child process and records it with the runner's children;
    `discard(child)` drops a reaped refresher from that record before its replacement starts, so
    the runner's stop-everything path (`_kill_all`) still reaches every live child. `message`
    prints a progress line.
    """

    def __init__(self, spawn: Callable[[str, list[str], dict[str, str]], Child], discard: Callable[[Child], None],
                 keys: RunKeys, auth: Auth | None, message: Callable[[str], None]) -> None:
        self._spawn = spawn
        self._discard = discard
        self._keys = keys
        self._auth = auth
        self._message = message
        self._launch: tuple[list[str], dict[str, str]] | None = None  # its args and env
        self._child: Child | None = None
        self._holder = ""  # the lease holder id of the current refresher process
        self._restarts = 0
        self._restart_at: float | None = None  # monotonic time of a pending restart
        self._gave_up = False

    @property
    def current(self) -> Child | None:
        """The current refresher process; None before `start`."""
        return self._child

    @property
    def restart_at(self) -> float | None:
        """When (time.monotonic()) the pending restart is due; None when there is none."""
        return self._restart_at

    def start(self, args: list[str], env: dict[str, str]) -> Child:
        """Start the first refresher; every restart uses the same `args` and `env`."""
        self._launch = (args, env)
        return self._spawn_refresher()

    def _spawn_refresher(self) -> Child:
        """Start a refresher process; each one gets its own lease holder id (`local-refresher-N`)."""
        assert self._launch is not None
        args, env = self._launch
        self._holder = f"local-refresher-{self._restarts + 1}"
        self._child = self._spawn("refresher", [*args, "--holder-id", self._holder], env)
        return self._child

    async def keep(self, client: aioredis.Redis, *, interrupted: bool, stopping: bool) -> str | None:
        """Start the refresher again when it exited mid-run (called once per poll of the runner).

        The runner knows the process is dead (it reaped it), so it frees that process's lease at
        once (only if the lease still names it) instead of making the new one wait out the lease
        period: the new refresher takes over within its start-up time and continues with the
        token in Redis while it is valid. Bounded: REFRESHER_RESTARTS restarts with a growing
        delay; then the token runs out and `auth.onExpired` decides.

        `interrupted`: the run stops on Ctrl-C; `stopping`: the run already stops for a reason
        of its own. Returns the run's failure when it must stop now: no refresher any more, the
        token expired and `auth.onExpired` is Fail.
        """
        child = self._child
        if child is None or self._launch is None or interrupted:
            return None  # no auth, or stopping on Ctrl-C (a second one kills every child on purpose)
        code = child.proc.poll()
        if code is None:
            return None
        if self._restart_at is None:
            if self._restarts >= REFRESHER_RESTARTS:
                return await self._gone(client, code, stopping=stopping)
            with contextlib.suppress(Exception):  # Redis away: the new one waits out the lease
                await RefresherStore(client, self._keys, self._holder).release()
            delay = min(REFRESHER_BACKOFF_S * 2 ** self._restarts, REFRESHER_BACKOFF_MAX_S)
            self._restart_at = time.monotonic() + delay
            self._message(f"the refresher exited with {exit_text(code)}; starting it again in {delay:g}s "
                          f"(restart {self._restarts + 1} of {REFRESHER_RESTARTS})")
            return None
        if time.monotonic() < self._restart_at:
            return None
        self._restart_at = None
        self._restarts += 1
        self._discard(child)  # reaped; the runner's `_kill_all` goes through the live ones
        self._spawn_refresher()
        return None

    async def _gone(self, client: aioredis.Redis, code: int, *, stopping: bool) -> str | None:
        """No refresher any more: say so once, and end the run at the token's expiry when
        `auth.onExpired` is Fail (a running refresher records the expiry itself)."""
        if not self._gave_up:
            self._gave_up = True
            self._message(f"the refresher exited with {exit_text(code)} after {REFRESHER_RESTARTS} "
                          "restarts; not starting it again: the token will expire")
        if self._auth is None or self._auth.on_expired != "Fail" or stopping:
            return None
        try:
            expires_at = await RefresherStore(client, self._keys, self._holder).token_expires_at()
        except (aioredis.ConnectionError, aioredis.TimeoutError):
            return None
        if expires_at is not None and expires_at <= time.time():
            return (f"the token expired: the refresher exited {REFRESHER_RESTARTS + 1} times "
                    "and was not started again (auth.onExpired: Fail)")
        return None
