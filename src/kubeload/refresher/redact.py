"""Keep secrets out of every message the refresher emits (logs, Redis stats, exceptions).

Messages are built without secret values in the first place; this is the safety net for text
that comes from elsewhere (an exception of a library, an error code echoed by a server).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

__all__ = ["MASK", "Redactor"]

MASK = "[redacted]"
# Shorter values cannot be masked without mangling every message; they are still never
# written on purpose, and a 1-3 character secret is no secret anyway.
_MIN_LENGTH = 4
# Tokens come and go; the last few are enough (an old token shows up in no new message).
_ROTATING_KEPT = 16


class Redactor:
    """Replaces every known secret (credentials, tokens, refresh tokens) by `[redacted]`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._fixed: set[str] = {s for s in secrets if len(s) >= _MIN_LENGTH}
        self._rotating: deque[str] = deque(maxlen=_ROTATING_KEPT)

    def add(self, secret: str) -> None:
        """Remember a secret learned at run time (a new token, a rotated refresh token)."""
        if len(secret) >= _MIN_LENGTH and secret not in self._fixed and secret not in self._rotating:
            self._rotating.append(secret)

    def __call__(self, text: str) -> str:
        # Longest first so a secret that contains another is masked as a whole.
        for secret in sorted({*self._fixed, *self._rotating}, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, MASK)
        return text
