"""Keep a VU process's memory proportional to its VUs: cap glibc's malloc arenas.

The HTTP engine's native runtime (tokio, under pyreqwest) allocates connection buffers on its
own thread; glibc then gives that thread its own arenas, and freed buffers stay spread over
them. Measured here with 10,000 connections in flight: 22 KB per VU by default, 13 KB with two
arenas (one per thread), at the same throughput. Must run before the engine starts its thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["limit_malloc_arenas"]

_M_ARENA_MAX = -8  # from glibc's malloc.h


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Set glibc's M_ARENA_MAX; False where there is no glibc (musl, macOS): nothing to do."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))
