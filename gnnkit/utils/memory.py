"""Hand freed heap memory back to the operating system before measuring peak memory.

:class:`gnnkit.utils.timing.PeakRSS` measures how far resident memory rises above its level at
the start of a block. When an earlier block in the same process freed memory that the C
allocator kept (glibc keeps freed chunks of the heap, and raises its ``mmap`` threshold after
large frees), the next block reuses those resident pages and its rise is underestimated.
:func:`release_free_memory` (glibc's ``malloc_trim(0)``) returns them first, so in-process
measurements of successive runs (``gnnkit bench node`` interleaves gnnkit and PyG runs in one
process) each see their own peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

__all__ = ["release_free_memory"]

_libc: Any = None


def release_free_memory() -> bool:
    """Ask the C allocator to return freed heap pages to the OS; ``False`` where unsupported.

    Calls glibc's ``malloc_trim(0)``; a no-op (returning ``False``) with other C libraries.
    """
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
    trim = getattr(_libc, "malloc_trim", None) if _libc else None
    if trim is None:
        return False
    trim(0)
    return True
