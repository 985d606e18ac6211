"""k6-style duration strings (`500ms`, `30s`, `2m`, `1h30m`, `1.5s`)."""

from __future__ import annotations

import functools
import re

__all__ = ["DURATION_PATTERN", "format_duration", "parse_duration"]

# Anchored so the CRD and Python refuse the same strings; one or more number+unit groups.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@functools.lru_cache(maxsize=1024)
def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise ValueError naming what is allowed.

    Cached: the schedule functions re-read a spec's few durations on the load's hot path."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(
            f"invalid duration {text!r}: use a number with a unit ms, s, m or h, "
            "for example 500ms, 30s, 2m, 1h30m"
        )
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Shortest k6-style string for a number of seconds (used in messages and the summary)."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    frac = seconds - whole
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs or frac or not parts:
        parts.append(f"{secs + frac:g}s")
    return "".join(parts)
