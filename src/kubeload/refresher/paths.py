"""Dotted paths (`data.auth.token`) into JSON documents."""

from __future__ import annotations

from typing import Any

__all__ = ["MISSING", "dotted_get"]


class _Missing:
    """Sentinel: the path does not exist (distinct from a JSON null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def dotted_get(document: Any, path: str) -> Any:
    """The value at `path` (`a.b.0.c`: keys of objects, indexes of arrays) or `MISSING`.

    Digits index arrays so a token inside a list (`tokens.0.value`) is reachable; an object
    key that happens to be digits still works because objects are looked up by key first.
    """
    current = document
    for part in path.split("."):
        if isinstance(current, dict):
            if part not in current:
                return MISSING
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return MISSING
    return current
