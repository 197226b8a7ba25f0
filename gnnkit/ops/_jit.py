"""Compiled CPU kernels through numba's JIT, with today's torch kernels as the fallback.

gnnkit stays a pure-Python install: numba ships binary wheels (no compiler needed), compiles a
kernel on its first call and caches the machine code on disk (``NUMBA_CACHE_DIR``, else next
to the module or in the user's cache folder), so only the first call of a fresh installation
pays the compile. Where numba is missing, fails to import, or ``GNNKIT_JIT=0`` is set, every
caller takes its torch path instead, with the same results to floating-point rounding.

Kernels run on numba's thread pool, sized to ``torch.get_num_threads()`` at each call, so
``torch.set_num_threads`` (and the benchmarks' one-thread setting) governs them too.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch

__all__ = ["jit_available", "jit_kernel", "jit_threads"]

F = TypeVar("F", bound=Callable[..., Any])


@functools.cache
def _numba() -> Any:
    """The numba module, or ``None`` when it is absent, broken or switched off."""
    if os.environ.get("GNNKIT_JIT", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        import numba
    except Exception:  # any import failure (missing, incompatible numpy...) means no JIT
        return None
    return numba


def jit_available() -> bool:
    """Whether compiled CPU kernels can run here (numba importable, ``GNNKIT_JIT`` not 0)."""
    return _numba() is not None


def jit_threads() -> None:
    """Size numba's thread pool to torch's intra-op thread count (call before a kernel)."""
    numba = _numba()
    if numba is not None:
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def jit_kernel(parallel: bool = True, **options: Any) -> Callable[[F], F]:
    """Decorate a numba kernel: compiled lazily on first call, cached on disk, fastmath off.

    The decorated function must only be called when :func:`jit_available` is true; the
    Python function is returned unchanged otherwise (so a module defining kernels always
    imports).
    """

    def wrap(function: F) -> F:
        numba = _numba()
        if numba is None:
            return function
        return numba.njit(parallel=parallel, cache=True, nogil=True, **options)(function)

    return wrap
