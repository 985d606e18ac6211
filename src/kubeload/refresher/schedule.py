"""Pure timing: when to refresh a token, how long to wait after a failure.

Everything here is a function of its arguments (times in epoch seconds, randomness passed in),
so the policy is tested without clocks or sleeps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..api.durations import parse_duration

__all__ = [
    "Backoff",
    "RefreshBefore",
    "parse_refresh_before",
    "refresh_at",
    "retry_delay",
]

_PERCENT = re.compile(r"^([0-9]{1,2}(?:\.[0-9]+)?)%$")
# A token is never refreshed earlier than this share of its lifetime, whatever `refreshBefore`
# says: a `refreshBefore` longer than the lifetime would otherwise refresh in a hot loop.
_MIN_ELAPSED_SHARE = 0.5


@dataclass(frozen=True)
class RefreshBefore:
    """`refreshBefore`: a share of the lifetime (`fraction`) or a fixed time (`seconds`)."""

    fraction: float | None = None
    seconds: float | None = None

    def margin(self, lifetime: float) -> float:
        """Seconds before expiry at which to refresh a token living `lifetime` seconds."""
        if self.fraction is not None:
            return lifetime * self.fraction
        assert self.seconds is not None
        return self.seconds


def parse_refresh_before(text: str) -> RefreshBefore:
    """`20%` -> a fifth of the lifetime; `30s`, `1m30s` -> a fixed margin."""
    match = _PERCENT.match(text)
    if match:
        return RefreshBefore(fraction=float(match.group(1)) / 100.0)
    return RefreshBefore(seconds=parse_duration(text))


def refresh_at(obtained_at: float, expires_at: float, before: RefreshBefore) -> float:
    """When to refresh a token obtained at `obtained_at` that expires at `expires_at`.

    `refreshBefore` of the lifetime is left at that moment, but never before half the lifetime
    has elapsed (see `_MIN_ELAPSED_SHARE`); a token without lifetime is refreshed at once.
    """
    lifetime = expires_at - obtained_at
    if lifetime <= 0:
        return obtained_at
    margin = min(before.margin(lifetime), lifetime * (1.0 - _MIN_ELAPSED_SHARE))
    return expires_at - margin


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog): base * 2^attempt, capped."""

    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.5  # the delay is drawn in [d * (1 - jitter), d]

    def delay(self, attempt: int, rand: float) -> float:
        """Delay before retry number `attempt` (0 = first retry); `rand` is uniform in [0, 1)."""
        raw = min(self.cap, self.base * (2.0 ** min(attempt, 30)))
        return raw * (1.0 - self.jitter * rand)


def retry_delay(backoff: Backoff, attempt: int, rand: float, now: float,
                expires_at: float | None) -> float:
    """Delay before the next try after a failed refresh.

    While the current token is valid, the wait never exceeds half the time it has left, so a
    long backoff cannot sleep through the expiry: the last tries come close together right
    before it (never closer than 50 ms apart). After expiry, plain backoff.
    """
    delay = backoff.delay(attempt, rand)
    if expires_at is not None and expires_at > now:
        delay = min(delay, max((expires_at - now) / 2.0, 0.05))
    return delay
